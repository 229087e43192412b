"""The features folder that ``dinosearch embed`` writes and every later stage reads.

Layout of ``OUT/``::

    features.npy       (N, D) float32 backbone features; row i belongs to metadata row i
    metadata.parquet   id, path, label and every manifest column, one row per vector
    skipped.csv        path, reason: files that could not be embedded
    manifest.json      backbone info and fingerprint, count, dim, checksums, source, date

Large jobs write shards into ``OUT.partial/shards/`` first (the local engine and the Ray engine
alike); ``resume=True`` keeps finished shards and computes only the missing ones.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from dinosearch.backbones import Backbone
from dinosearch.core.runtime import package_version
from dinosearch.core.storage import read_json, replace_dir, sha256_file, write_json
from dinosearch.features.remote import is_uri, load_uri_records
from dinosearch.inputs.records import load_records, records_fingerprint

Engine = Literal["local", "ray"]
ENGINES = ("local", "ray")


@dataclass
class FeatureSet:
    """Features and their row-aligned metadata, as stored by ``embed``."""

    features: np.ndarray  # (N, D) float32, may be memory-mapped
    metadata: pd.DataFrame  # N rows: id, path, [label], …
    manifest: dict[str, Any]

    @property
    def fingerprint(self) -> str:
        return str(self.manifest["backbone"]["fingerprint"])


def load_features(folder: str | Path, *, verify: bool = False, metadata: bool = True) -> FeatureSet:
    """Open an ``embed`` output folder; check counts and dimension (and checksums with ``verify``).

    ``features`` is memory-mapped. ``metadata=False`` leaves the metadata unread (an empty frame;
    only its row count is checked), for readers of 10⁷+ rows that take it from Parquet themselves.
    """
    root = Path(folder)
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(
            f"{root} is not a features folder (no manifest.json); make one with `dinosearch embed`"
        )
    manifest = read_json(manifest_path)
    for name in ("features.npy", "metadata.parquet"):
        path = root / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; re-run `dinosearch embed`")
        if verify and sha256_file(path) != manifest["checksums"][name]:
            raise ValueError(f"{path}: checksum differs from manifest.json; the file was altered")
    features = np.load(root / "features.npy", mmap_mode="r")
    table = pd.read_parquet(root / "metadata.parquet") if metadata else pd.DataFrame()
    rows = len(table) if metadata else pq.ParquetFile(root / "metadata.parquet").metadata.num_rows
    count, dim = int(manifest["count"]), int(manifest["dim"])
    if features.shape != (count, dim):
        raise ValueError(
            f"{root / 'features.npy'}: shape {features.shape}, manifest says {(count, dim)}"
        )
    if rows != count:
        raise ValueError(f"{root / 'metadata.parquet'}: {rows} rows, manifest says {count}")
    return FeatureSet(features, table, manifest)


def embed_to_folder(
    records: pd.DataFrame,
    backbone: Backbone,
    out: str | Path,
    *,
    pre_skipped: pd.DataFrame | None = None,
    shard_size: int = 4096,
    resume: bool = False,
    batch_size: int = 32,
    num_workers: int | None = None,
    source: str = "",
    progress: bool = True,
    engine: Engine = "local",
    address: str | None = None,
    actors: int | None = None,
) -> FeatureSet:
    """Embed every record into ``out`` (see module docstring); bad files are skipped and listed.

    ``engine="ray"`` runs the missing shards as a Ray Data pipeline on the cluster at ``address``
    (None: a local one) with ``actors`` model replicas (see ``ray_engine``); the folder is the same.
    """
    out = Path(out)
    partial = _open_partial(records, backbone, out, shard_size, resume)
    paths = records["path"].tolist()
    starts = [
        s
        for s in range(0, len(records), shard_size)
        if not shard_path(partial, s, shard_size).exists()
    ]  # the others finished before an interruption
    if engine == "ray":
        from dinosearch.features.ray_engine import embed_shards

        embed_shards(
            paths,
            starts,
            shard_size,
            partial,
            backbone,
            address=address,
            actors=actors,
            batch_size=batch_size,
            num_workers=num_workers,
            progress=progress,
        )
    elif engine != "local":
        raise ValueError(f"engine {engine!r} is not one of {', '.join(ENGINES)}")
    for start in starts if engine == "local" else ():
        _embed_shard(
            paths,
            start,
            min(start + shard_size, len(records)),
            shard_path(partial, start, shard_size),
            backbone,
            batch_size,
            num_workers,
            progress,
        )
    return _consolidate(records, backbone, partial, out, pre_skipped, source)


def embed_images(
    images: str | Path,
    backbone: Backbone,
    out: str | Path,
    *,
    path_column: str | None = None,
    label_from_folder: bool = True,
    limit: int | None = None,
    **options: Any,
) -> FeatureSet:
    """Embed an image folder or CSV/Parquet manifest into the features folder ``out``.

    ``options`` go to ``embed_to_folder`` (shard_size, resume, batch_size, num_workers, progress,
    engine, address, actors). ``images`` may also be a URI (``s3://bucket/films/``) that pyarrow or
    fsspec can read. Files that are not images (``notes.txt``) and files that fail to decode are
    listed in ``skipped.csv``; the count embedded is ``manifest["count"]``.
    """
    if is_uri(str(images)):
        records, passed_over = load_uri_records(
            str(images), path_column=path_column, label_from_folder=label_from_folder
        )
    else:
        records, passed_over = load_records(
            images, path_column=path_column, label_from_folder=label_from_folder
        )
    if limit is not None:
        records = records.iloc[:limit].reset_index(drop=True)
    return embed_to_folder(
        records, backbone, out, pre_skipped=passed_over, source=str(images), **options
    )


def _open_partial(
    records: pd.DataFrame, backbone: Backbone, out: Path, shard_size: int, resume: bool
) -> Path:
    """``OUT.partial/`` for this plan: kept on ``resume`` when the plan matches, else started anew."""
    partial = out.with_name(out.name + ".partial")
    plan = {
        "fingerprint": backbone.fingerprint,
        "images": records_fingerprint(records),
        "count": len(records),
        "shard_size": shard_size,
    }
    if partial.exists() and not (resume and _same_plan(partial, plan)):
        if resume:
            raise ValueError(
                f"{partial} was made by another backbone or image set; run again without --resume"
            )
        shutil.rmtree(partial)
    (partial / "shards").mkdir(parents=True, exist_ok=True)
    write_json(partial / "plan.json", plan)
    return partial


def shard_path(partial: Path, start: int, shard_size: int) -> Path:
    """Where the shard of records ``start`` … ``start + shard_size - 1`` is kept while running."""
    return partial / "shards" / f"{start // shard_size:05d}.npz"


def write_shard(
    shard: Path, positions: np.ndarray, features: np.ndarray, failures: list[tuple[int, str]]
) -> None:
    """Save one shard: kept positions (n,) sorted, their (n, D) features, failures (position, reason)."""
    fail_pos = np.array([i for i, _ in failures], dtype=np.int64)
    fail_reason = np.array([r for _, r in failures], dtype=str)
    tmp = shard.with_name(shard.stem + ".tmp.npz")
    np.savez(
        tmp, positions=positions, features=features, fail_pos=fail_pos, fail_reason=fail_reason
    )
    tmp.replace(shard)  # a shard either exists whole or not at all


def _same_plan(partial: Path, plan: dict[str, Any]) -> bool:
    try:
        return read_json(partial / "plan.json") == plan
    except (FileNotFoundError, ValueError):
        return False


def _embed_shard(
    paths: list[str],
    start: int,
    stop: int,
    shard: Path,
    backbone: Backbone,
    batch_size: int,
    num_workers: int | None,
    progress: bool,
) -> None:
    from dinosearch.features.extract import extract_features

    desc = f"embed {start}-{stop - 1}" if progress else False
    pos, feats, failures = extract_features(
        paths[start:stop], backbone, batch_size=batch_size, num_workers=num_workers, progress=desc
    )
    write_shard(shard, pos + start, feats, [(start + i, r) for i, r in failures])


def _consolidate(
    records: pd.DataFrame,
    backbone: Backbone,
    partial: Path,
    out: Path,
    pre_skipped: pd.DataFrame | None,
    source: str,
) -> FeatureSet:
    """Shards → the features folder; features.npy is written shard by shard (never all in memory)."""
    shards = sorted((partial / "shards").glob("[0-9]*.npz"))
    positions, fail_pos, fail_reason = [], [], []
    for shard in shards:
        with np.load(shard) as z:
            positions.append(z["positions"])
            fail_pos.extend(z["fail_pos"].tolist())
            fail_reason.extend(z["fail_reason"].tolist())
    kept = np.concatenate(positions) if positions else np.empty(0, dtype=np.int64)
    result = partial / "result"
    result.mkdir(exist_ok=True)
    features = np.lib.format.open_memmap(
        result / "features.npy", "w+", np.float32, (len(kept), backbone.embed_dim)
    )
    row = 0
    for shard in shards:
        with np.load(shard) as z:
            chunk = z["features"]
            features[row : row + len(chunk)] = chunk
            row += len(chunk)
    features.flush()
    del features
    metadata = records.iloc[kept].reset_index(drop=True)
    skipped = pd.DataFrame({"path": records["path"].iloc[fail_pos].tolist(), "reason": fail_reason})
    if pre_skipped is not None and len(pre_skipped):
        skipped = pd.concat([pre_skipped[["path", "reason"]], skipped], ignore_index=True)
    metadata.to_parquet(result / "metadata.parquet", index=False)
    skipped.to_csv(result / "skipped.csv", index=False)
    manifest = {
        "kind": "features",
        "backbone": backbone.info(),
        "count": int(len(metadata)),
        "dim": int(backbone.embed_dim),
        "skipped": int(len(skipped)),
        "source": source,
        "images": records_fingerprint(metadata),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dinosearch_version": package_version(),
        "checksums": {n: sha256_file(result / n) for n in ("features.npy", "metadata.parquet")},
    }
    write_json(result / "manifest.json", manifest)
    replace_dir(result, out)
    shutil.rmtree(partial, ignore_errors=True)
    return FeatureSet(np.load(out / "features.npy", mmap_mode="r"), metadata, manifest)
