"""A features folder rewritten as (old rows kept) + (new rows), swapped in whole, never half."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dinosearch.core.lock import writing
from dinosearch.core.runtime import package_version
from dinosearch.core.storage import remove_dir, replace_dir, sha256_file, write_json
from dinosearch.features.folder import DATA_FILES, FeatureSet, load_features
from dinosearch.inputs.records import records_fingerprint

CHUNK = 65536  # rows copied at a time: features.npy is never all in memory


def read_skipped(folder: Path | None) -> pd.DataFrame:
    path = None if folder is None else folder / "skipped.csv"
    if path is None or not path.is_file():
        return pd.DataFrame({"path": pd.Series(dtype=str), "reason": pd.Series(dtype=str)})
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def open_features(out: Path) -> FeatureSet | None:
    """The features folder, or None before the first pass (a folder a kill left aside is put back)."""
    try:
        return load_features(out)
    except FileNotFoundError:
        if out.exists():
            raise
        return None


def merge_features(
    out: Path,
    listed: set[str],
    new_dir: Path | None,
    *,
    skipped_paths: set[str],
    config: dict[str, Any],
) -> FeatureSet:
    """Write ``out`` = its rows whose id is in ``listed``, then the rows of ``new_dir`` it lacks.

    Holds ``out``'s writer lock: the folder is read again under it, so an ``embed`` or ``remove``
    that finished while the new films were embedded is neither undone nor duplicated.
    ``skipped.csv`` keeps old and new entries whose path is in ``skipped_paths`` (those the
    archive still has). The result is built in ``OUT.sync/`` and swapped in with ``replace_dir``.
    """
    with writing(out, "sync"):
        old = open_features(out)
        new = load_features(new_dir) if new_dir is not None else None
        if old is None and new is None:
            raise ValueError(f"nothing to merge into {out}: no features folder and no new films")
        if (
            old is not None
            and new is not None
            and old.manifest["backbone"] != new.manifest["backbone"]
        ):
            raise ValueError(
                f"{out} was rewritten with another backbone while sync embedded new films; "
                "run sync again (it embeds with the folder's backbone)"
            )
        staged = out.with_name(out.name + ".sync")
        remove_dir(staged)
        staged.mkdir(parents=True)
        metadata = _write_rows(old, listed, new, staged / "features.npy")
        base = (old or new).manifest  # type: ignore[union-attr]
        skipped = pd.concat([read_skipped(out), read_skipped(new_dir)])
        _finish(staged, base, metadata, skipped[skipped["path"].isin(skipped_paths)], config)
        replace_dir(staged, out)
        return load_features(out)


def _write_rows(
    old: FeatureSet | None, listed: set[str], new: FeatureSet | None, target_path: Path
) -> pd.DataFrame:
    """Copy old rows still listed, then new rows of ids not among them; returns their metadata."""
    old_ids = old.metadata["id"].astype(str) if old is not None and len(old.metadata) else None
    rows = (
        np.flatnonzero(old_ids.isin(listed).to_numpy()) if old_ids is not None else np.empty(0, int)
    )
    kept = set(old_ids.iloc[rows]) if old_ids is not None else set()
    fresh = (
        np.flatnonzero(~new.metadata["id"].astype(str).isin(kept).to_numpy())
        if new is not None and len(new.metadata)
        else np.empty(0, np.int64)
    )
    dim = int((old or new).manifest["dim"])  # type: ignore[union-attr]
    count = len(rows) + len(fresh)
    target = np.lib.format.open_memmap(target_path, "w+", np.float32, (count, dim))
    at = 0
    for source, picked in ((old, rows), (new, fresh)):
        for start in range(0, len(picked), CHUNK):
            part = picked[start : start + CHUNK]
            target[at : at + len(part)] = source.features[part]  # type: ignore[union-attr]
            at += len(part)
    target.flush()
    del target
    parts = [old.metadata.iloc[rows]] if old is not None else []
    parts += [new.metadata.iloc[fresh]] if new is not None else []
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _finish(
    staged: Path,
    base: dict[str, Any],
    metadata: pd.DataFrame,
    skipped: pd.DataFrame,
    config: dict[str, Any],
) -> None:
    """metadata.parquet, skipped.csv and manifest.json (backbone and dim from ``base``) of ``staged``."""
    metadata.to_parquet(staged / "metadata.parquet", index=False)
    skipped = skipped.drop_duplicates("path")
    skipped.to_csv(staged / "skipped.csv", index=False)
    manifest = {
        "kind": "features",
        "backbone": base["backbone"],
        "count": len(metadata),
        "dim": int(base["dim"]),
        "skipped": int(len(skipped)),
        "source": config.get("archive", ""),
        "images": records_fingerprint(metadata) if len(metadata) else "",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "dinosearch_version": package_version(),
        "sync": config,
        "checksums": {n: sha256_file(staged / n) for n in DATA_FILES},
    }
    write_json(staged / "manifest.json", manifest)
