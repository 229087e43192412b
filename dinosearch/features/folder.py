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

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from dinosearch.backbones import Backbone
from dinosearch.core.columns import check_metadata_columns
from dinosearch.core.fields import Kind, check_fields
from dinosearch.core.lock import writing
from dinosearch.core.storage import (
    clean_leftovers,
    read_json,
    sha256_file,
)
from dinosearch.features.config import ENGINES, Engine
from dinosearch.features.remote import is_uri, load_uri_records
from dinosearch.features.shards import (
    DATA_FILES,
    consolidate,
    embed_local,
    open_partial,
    shard_path,
)
from dinosearch.inputs.dicomweb import is_dicomweb
from dinosearch.inputs.records import load_records

REDO = "re-run `dinosearch embed`"


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
    config: dict[str, Any] | None = None,
) -> FeatureSet:
    """Embed every record into ``out`` (see module docstring); bad files are skipped and listed.

    ``engine="ray"`` runs the missing shards as a Ray Data pipeline on the cluster at ``address``
    (None: a local one) with ``actors`` model replicas (see ``ray_engine``); the folder is the same.
    ``config`` (the job's settings, ``core.config.job_record``) is recorded in manifest.json.
    """
    out = Path(out)
    if engine not in ENGINES:  # every argument checked before the disk is touched
        raise ValueError(f"engine {engine!r} is not one of {', '.join(ENGINES)}")
    if shard_size < 1:
        raise ValueError(f"shard size {shard_size} must be ≥ 1")
    check_metadata_columns(records.columns, f"the image list for {out}")
    with writing(out, "embed"):  # one embed per --out: a second waits, then gets one line
        partial = open_partial(records, backbone, out, shard_size, resume)
        _embed_missing(
            records,
            backbone,
            partial,
            shard_size,
            engine,
            address=address,
            actors=actors,
            batch_size=batch_size,
            num_workers=num_workers,
            progress=progress,
        )
        metadata, manifest = consolidate(
            records, backbone, partial, out, pre_skipped, source, config
        )
        return FeatureSet(np.load(out / "features.npy", mmap_mode="r"), metadata, manifest)


def _embed_missing(
    records: pd.DataFrame,
    backbone: Backbone,
    partial: Path,
    shard_size: int,
    engine: Engine,
    *,
    address: str | None,
    actors: int | None,
    batch_size: int | None,
    num_workers: int | None,
    progress: bool,
) -> None:
    """Embed the shards of ``records`` not yet in ``partial`` (one per ``shard_size`` rows)."""
    paths = records["path"].tolist()
    spans = [
        (start, min(start + shard_size, len(records)))
        for start in range(0, len(records), shard_size)
        if not shard_path(partial, start, shard_size).exists()  # finished before an interruption
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
    else:
        embed_local(
            paths,
            spans,
            partial,
            shard_size,
            backbone,
            batch_size=batch_size,
            num_workers=num_workers,
            progress=progress,
        )


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
