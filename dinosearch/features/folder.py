"""The features folder that ``dinosearch embed`` writes and every later stage reads.

Layout of ``OUT/``::

    features.npy       (N, D) float32 backbone features; row i belongs to metadata row i
    metadata.parquet   id, path, label and every manifest column, one row per vector
    skipped.csv        path, reason: files that could not be embedded
    warnings.csv       path, warning: files embedded with a warning (a DICOM window not used)
    manifest.json      backbone info and fingerprint, count, dim, checksums, source, date

Large jobs write shards into ``OUT.partial/shards/`` first (the local engine and the Ray engine
alike); ``resume=True`` keeps finished shards and computes only the missing ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from dinosearch.backbones import Backbone
from dinosearch.core.columns import check_metadata_columns
from dinosearch.core.fields import Kind, check_fields
from dinosearch.core.lock import writing
from dinosearch.core.runtime import package_version
from dinosearch.core.storage import (
    clean_leftovers,
    read_json,
    remove_dir,
    replace_dir,
    sha256_file,
    write_json,
)
from dinosearch.features.remote import is_uri, load_uri_records
from dinosearch.inputs.dicomweb import is_dicomweb
from dinosearch.inputs.records import load_records, records_fingerprint

DATA_FILES = ("features.npy", "metadata.parquet")
REDO = "re-run `dinosearch embed`"
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
    if not root.exists():
        clean_leftovers(root)  # an embed killed mid-swap leaves the old folder aside: put it back
    if not manifest_path.is_file():
        raise FileNotFoundError(
            f"{root} is not a features folder (no manifest.json); make one with `dinosearch embed`"
        )
    manifest = read_json(manifest_path)
    spec: dict[str, Kind] = {"count": "count", "dim": "positive", "backbone.fingerprint": "str"}
    if verify:
        spec.update({f"checksums.{n}": "str" for n in DATA_FILES})
    check_fields(manifest, spec, manifest_path, REDO)
    for name in DATA_FILES:
        path = root / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; {REDO}")
        if verify and sha256_file(path) != manifest["checksums"][name]:
            raise ValueError(f"{path}: checksum differs from manifest.json; the file was altered")
    features, table = _read_data(root, metadata)
    count, dim = manifest["count"], manifest["dim"]
    if features.shape != (count, dim):
        raise ValueError(
            f"{root / 'features.npy'}: shape {features.shape}, manifest says {(count, dim)}; {REDO}"
        )
    rows = len(table) if metadata else _parquet_rows(root / "metadata.parquet")
    if rows != count:
        raise ValueError(f"{root / 'metadata.parquet'}: {rows} rows, manifest says {count}; {REDO}")
    return FeatureSet(features, table, manifest)


def _parquet_rows(path: Path) -> int:
    try:
        return int(pq.ParquetFile(path).metadata.num_rows)
    except Exception as e:  # Arrow raises its own error types
        raise ValueError(f"{path}: unreadable ({e}); {REDO}") from e


def _read_data(root: Path, metadata: bool = True) -> tuple[np.ndarray, pd.DataFrame]:
    """features.npy (memory-mapped float32) and metadata.parquet; errors name the file."""
    path = root / "features.npy"
    try:
        features = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as e:  # object arrays, pickles, truncated headers
        raise ValueError(f"{path}: not a .npy array of floats ({e}); {REDO}") from e
    if not np.issubdtype(features.dtype, np.floating) or features.ndim != 2:
        raise ValueError(
            f"{path}: holds a {features.ndim}-d {features.dtype} array, not (N, D) floats; {REDO}"
        )
    if not metadata:
        return features, pd.DataFrame()
    try:
        table = pd.read_parquet(root / "metadata.parquet")
    except Exception as e:  # Arrow raises its own error types
        raise ValueError(f"{root / 'metadata.parquet'}: unreadable ({e}); {REDO}") from e
    return features, table


def embed_to_folder(
    records: pd.DataFrame,
    backbone: Backbone,
    out: str | Path,
    *,
    pre_skipped: pd.DataFrame | None = None,
    shard_size: int = 4096,
    resume: bool = False,
    batch_size: int | None = None,
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
    check_metadata_columns(records.columns, f"the image list for {out}")
    with writing(out, "embed"):  # one embed per --out: a second waits, then gets one line
        partial = _open_partial(records, backbone, out, shard_size, resume)
        paths = records["path"].tolist()
        spans = [
            (start, min(start + shard_size, len(records)))
            for start in range(0, len(records), shard_size)
            if not shard_path(
                partial, start, shard_size
            ).exists()  # finished before an interruption
        ]
        if engine == "ray":
            from dinosearch.features.ray_engine import embed_shards

            embed_shards(
                paths,
                [start for start, _ in spans],
                shard_size,
                partial,
                backbone,
                address=address,
                actors=actors,
                batch_size=batch_size or 32,  # per CPU actor; GPU actors take whole shards
                num_workers=num_workers,
                progress=progress,
            )
        elif engine != "local":
            raise ValueError(f"engine {engine!r} is not one of {', '.join(ENGINES)}")
        else:
            _embed_shards(
                paths,
                spans,
                partial,
                shard_size,
                backbone,
                batch_size=batch_size,
                num_workers=num_workers,
                progress=progress,
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
    fsspec can read, or a DICOMweb archive (``dicomweb+http://…``, ``inputs.dicomweb``). Files that are not images (``notes.txt``) and files that fail to decode are
    listed in ``skipped.csv``; the count embedded is ``manifest["count"]``.
    """
    if is_uri(str(images)) and not is_dicomweb(str(images)):
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
    for leftover in (out, partial):
        clean_leftovers(leftover)  # of a run killed mid-swap or mid-delete
    plan = {
        "fingerprint": backbone.fingerprint,
        "images": records_fingerprint(records),
        "count": len(records),
        "shard_size": shard_size,
    }
    if partial.exists() and not (resume and _same_plan(partial, plan)):
        if resume and (partial / "plan.json").is_file():
            raise ValueError(
                f"{partial} was made by another backbone or image set; run again without --resume"
            )
        remove_dir(partial)  # no plan: killed before it was written; nothing to keep
    (partial / "shards").mkdir(parents=True, exist_ok=True)
    write_json(partial / "plan.json", plan)
    return partial


def shard_path(partial: Path, start: int, shard_size: int) -> Path:
    """Where the shard of records ``start`` … ``start + shard_size - 1`` is kept while running."""
    return partial / "shards" / f"{start // shard_size:05d}.npz"


def write_shard(
    shard: Path,
    positions: np.ndarray,
    features: np.ndarray,
    failures: list[tuple[int, str]],
    warnings: Sequence[tuple[int, str]] = (),
) -> None:
    """Save one shard: kept positions (n,) sorted, their (n, D) features, failures (position, reason)
    and warnings (position, warning) of kept images."""
    fail_pos = np.array([i for i, _ in failures], dtype=np.int64)
    fail_reason = np.array([r for _, r in failures], dtype=str)
    tmp = shard.with_name(shard.stem + ".tmp.npz")
    np.savez(
        tmp,
        positions=positions,
        features=features,
        fail_pos=fail_pos,
        fail_reason=fail_reason,
        warn_pos=np.array([i for i, _ in warnings], dtype=np.int64),
        warn_reason=np.array([r for _, r in warnings], dtype=str),
    )
    tmp.replace(shard)  # a shard either exists whole or not at all


def _same_plan(partial: Path, plan: dict[str, Any]) -> bool:
    try:
        return read_json(partial / "plan.json") == plan
    except (FileNotFoundError, ValueError):
        return False


def _embed_shards(
    paths: list[str],
    spans: list[tuple[int, int]],
    partial: Path,
    shard_size: int,
    backbone: Backbone,
    **options: Any,
) -> None:
    """Embed the images of every (start, stop) span in one pass, so the loader's workers run on
    across shard boundaries, and write each shard as soon as its last image is done."""
    from dinosearch.features.extract import iter_features

    if not spans:
        return  # every shard finished before an interruption
    todo = np.array([i for start, stop in spans for i in range(start, stop)], dtype=np.int64)
    ends = np.cumsum([stop - start for start, stop in spans])  # local end of each span in todo
    rows: dict[int, np.ndarray] = {}  # local position → (D,) features, until written
    reasons: dict[int, str] = {}
    notes: list[tuple[int, str]] = []  # (local position, warning), filled by iter_features
    done, written = 0, 0
    batches = iter_features([paths[i] for i in todo], backbone, warnings=notes, **options)
    for pos, feats, fails in batches:
        rows.update(zip(pos.tolist(), feats, strict=True))
        reasons.update(fails)
        done += len(pos) + len(fails)  # batches arrive in order: positions below done are final
        while written < len(spans) and done >= ends[written]:
            start, stop = spans[written]
            local = range(int(ends[written]) - (stop - start), int(ends[written]))
            kept = [i for i in local if i in rows]
            features = (
                np.stack([rows.pop(i) for i in kept])
                if kept
                else np.empty((0, backbone.embed_dim), np.float32)
            )
            failures = [(int(todo[i]), reasons.pop(i)) for i in local if i in reasons]
            warned = [(int(todo[i]), note) for i, note in notes if i in local]
            write_shard(
                shard_path(partial, start, shard_size), todo[kept], features, failures, warned
            )
            written += 1


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
    positions, fail_pos, fail_reason, warn_pos, warn_reason = [], [], [], [], []
    for shard in shards:
        with np.load(shard) as z:
            positions.append(z["positions"])
            fail_pos.extend(z["fail_pos"].tolist())
            fail_reason.extend(z["fail_reason"].tolist())
            if "warn_pos" in z.files:  # shards of an earlier version have none
                warn_pos.extend(z["warn_pos"].tolist())
                warn_reason.extend(z["warn_reason"].tolist())
    kept = np.concatenate(positions) if positions else np.empty(0, dtype=np.int64)
    result = partial / "result"
    remove_dir(result)  # a previous folder swapped out here by a run killed before deleting it
    result.mkdir()
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
    warned = pd.DataFrame({"path": records["path"].iloc[warn_pos].tolist(), "warning": warn_reason})
    warned.to_csv(result / "warnings.csv", index=False)
    manifest = {
        "kind": "features",
        "backbone": backbone.info(),
        "count": int(len(metadata)),
        "dim": int(backbone.embed_dim),
        "skipped": int(len(skipped)),
        "warnings": int(len(warned)),
        "source": source,
        "images": records_fingerprint(metadata),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "dinosearch_version": package_version(),
        "checksums": {n: sha256_file(result / n) for n in DATA_FILES},
    }
    write_json(result / "manifest.json", manifest)
    replace_dir(result, out)
    remove_dir(partial)
    return FeatureSet(np.load(out / "features.npy", mmap_mode="r"), metadata, manifest)
