"""Turn an image folder or a CSV/Parquet manifest into records: one row per image, in a stable order.

Records are a DataFrame with ``id`` (unique str), ``path`` (absolute str) and, when known, ``label``;
every other manifest column travels along as metadata.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from dinosearch.inputs.images import IMAGE_SUFFIXES

PATH_COLUMNS = ("path", "file", "filepath", "file_path", "image_path", "image", "filename")
ID_COLUMNS = ("id", "image_id")


def load_records(
    source: str | Path, *, path_column: str | None = None, label_from_folder: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Records to embed, and files passed over (``path``, ``reason``) such as ``notes.txt``.

    Args:
        source: a folder (walked recursively; a file's parent folder name becomes its ``label``)
            or a ``.csv``/``.parquet`` manifest with a path column (relative paths are taken from
            the manifest's folder).
        path_column: the manifest's path column; found among common names when omitted.
        label_from_folder: for folders, take ``label`` from the sub-folder name.
    """
    src = Path(source)
    if src.is_dir():
        return _from_folder(src, label_from_folder)
    if src.is_file() and src.suffix.lower() in (".csv", ".parquet", ".pq"):
        return _from_manifest(src, path_column), _empty_skipped()
    if not src.exists():
        raise FileNotFoundError(
            f"--images {src} does not exist; give an image folder or a manifest"
        )
    raise ValueError(f"--images {src}: expected a folder or a .csv/.parquet manifest")


def _empty_skipped() -> pd.DataFrame:
    return pd.DataFrame({"path": pd.Series(dtype=str), "reason": pd.Series(dtype=str)})


def _from_folder(root: Path, label_from_folder: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, skipped = [], []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue  # hidden files and folders (.DS_Store, .git) are not data
        suffix = path.suffix.lower()
        if suffix and suffix not in IMAGE_SUFFIXES:  # files without suffix may be DICOM
            skipped.append(
                {"path": str(path.resolve()), "reason": f"not an image file type ({suffix})"}
            )
            continue
        row = {"id": rel.with_suffix("").as_posix(), "path": str(path.resolve())}
        if label_from_folder and len(rel.parts) > 1:
            row["label"] = rel.parts[-2]
        rows.append(row)
    if not rows:
        raise ValueError(
            f"--images {root}: no image files found (looked for {sorted(IMAGE_SUFFIXES)})"
        )
    records = pd.DataFrame(rows)
    if "label" in records:
        records["label"] = records["label"].astype(object)
    return records, pd.DataFrame(skipped) if skipped else _empty_skipped()


def _from_manifest(manifest: Path, path_column: str | None) -> pd.DataFrame:
    try:
        table = pd.read_parquet(manifest) if manifest.suffix != ".csv" else pd.read_csv(manifest)
    except Exception as e:
        raise ValueError(f"{manifest}: cannot read manifest ({type(e).__name__}: {e})") from e
    column = path_column or next((c for c in PATH_COLUMNS if c in table.columns), None)
    if column is None or column not in table.columns:
        raise ValueError(
            f"{manifest}: no path column (looked for {path_column or PATH_COLUMNS}); "
            f"columns are {list(table.columns)}; pass --path-column"
        )
    base = manifest.resolve().parent
    paths = [
        str(p if Path(p).is_absolute() else (base / p).resolve()) for p in table[column].astype(str)
    ]
    records = table.copy()
    records["path"] = paths
    id_column = next((c for c in ID_COLUMNS if c in table.columns), None)
    if id_column is not None:
        records["id"] = table[id_column].astype(str)
    else:
        records["id"] = [Path(p).with_suffix("").name for p in table[column].astype(str)]
    duplicated = records["id"][records["id"].duplicated()].tolist()
    if duplicated:
        raise ValueError(f"{manifest}: ids must be unique; repeated: {duplicated[:5]}")
    front = ["id", "path"] + (["label"] if "label" in records else [])
    return records[front + [c for c in records.columns if c not in front]].reset_index(drop=True)


def records_fingerprint(records: pd.DataFrame) -> str:
    """A content hash of an image set: ids, paths and file sizes, in order (16 hex chars)."""
    digest = hashlib.sha256()
    for rid, path in zip(records["id"], records["path"], strict=True):
        try:
            size = Path(path).stat().st_size
        except OSError:
            size = -1
        digest.update(f"{rid}\0{path}\0{size}\n".encode())
    return digest.hexdigest()[:16]
