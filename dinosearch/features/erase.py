"""Drop rows (by id) from a features folder: the folder is rewritten without them and swapped in whole.

The old ``features.npy`` and ``metadata.parquet`` are deleted with the old folder, and so are what a
killed writer left beside it (``.NAME.old-PID``, ``.NAME.tmp-PID``, ``.NAME.deleting-PID``) and an
interrupted ``embed``'s shards (``NAME.partial/``), which may hold the same rows.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from dinosearch.core.storage import (
    clean_leftovers,
    remove_dir,
    replace_dir,
    sha256_file,
    write_json,
)
from dinosearch.features.folder import DATA_FILES, load_features
from dinosearch.inputs.records import records_fingerprint


def drop_rows(folder: str | Path, ids: Collection[str]) -> int:
    """Rewrite ``folder`` without the rows whose ``id`` is in ``ids``; return how many it dropped.

    Nothing is rewritten when no row matches (leftovers of killed writers are still deleted). The
    manifest's ``count``, ``images`` and ``checksums`` describe the new files; ``erased`` counts
    the rows dropped so far (never which).

    Raises:
        FileNotFoundError: ``folder`` is not a features folder.
    """
    root = Path(folder)
    clean_leftovers(root)  # a killed swap's old copy still holds the rows
    remove_dir(root.with_name(root.name + ".partial"))  # an interrupted embed's shards
    fs = load_features(root)
    drop = fs.metadata["id"].astype(str).isin({str(i) for i in ids}).to_numpy()  # (N,) bool
    if not drop.any():
        return 0
    keep = np.flatnonzero(~drop)
    staged = root.with_name(f".{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir()
    try:
        kept = np.lib.format.open_memmap(
            staged / "features.npy", "w+", np.float32, (len(keep), fs.features.shape[1])
        )
        for start in range(0, len(keep), 65_536):  # chunk by chunk: never all rows in memory
            part = keep[start : start + 65_536]
            kept[start : start + len(part)] = fs.features[part]
        kept.flush()
        del kept
        metadata = fs.metadata.iloc[keep].reset_index(drop=True)
        metadata.to_parquet(staged / "metadata.parquet", index=False)
        for extra in root.iterdir():  # skipped.csv and any file embed may add later
            if extra.is_file() and extra.name not in (*DATA_FILES, "manifest.json"):
                shutil.copy2(extra, staged / extra.name)
        manifest = {
            **fs.manifest,
            "count": len(keep),
            "images": records_fingerprint(metadata),
            "erased": int(fs.manifest.get("erased", 0)) + int(drop.sum()),
            "modified": datetime.now(UTC).isoformat(timespec="seconds"),
            "checksums": {n: sha256_file(staged / n) for n in DATA_FILES},
        }
        write_json(staged / "manifest.json", manifest)
        del fs  # release the memory map of the old features.npy before it is deleted
        replace_dir(staged, root)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return int(drop.sum())
