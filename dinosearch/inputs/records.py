"""Turn an image folder or a CSV/Parquet manifest into records: one row per image, in a stable order.

Records are a DataFrame with ``id`` (unique str), ``path`` (absolute str) and, when known, ``label``;
every other manifest column travels along as metadata.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from dinosearch.inputs.dicomweb import is_dicomweb, load_archive_records
from dinosearch.inputs.errors import display_path
from dinosearch.inputs.images import IMAGE_SUFFIXES
from dinosearch.inputs.limits import MAX_MANIFEST_BYTES, not_regular, open_regular_file

PATH_COLUMNS = ("path", "file", "filepath", "file_path", "image_path", "image", "filename")
ID_COLUMNS = ("id", "image_id")


def load_records(
    source: str | Path, *, path_column: str | None = None, label_from_folder: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Records to embed, and files passed over (``path``, ``reason``) such as ``notes.txt``.

    Args:
        source: a folder (walked recursively; a file's parent folder name becomes its ``label``)
            or a ``.csv``/``.parquet`` manifest with a path column (relative paths are taken from
            the manifest's folder), or a DICOMweb archive ``dicomweb+http://…?QIDO-filters``
            (``inputs.dicomweb``: one record per instance, id = SOP Instance UID).
        path_column: the manifest's path column; found among common names when omitted.
        label_from_folder: for folders, take ``label`` from the sub-folder name.
    """
    if is_dicomweb(str(source)):
        return load_archive_records(str(source))
    src = Path(source)
    if src.is_dir():
        return _from_folder(src, label_from_folder)
    if src.suffix.lower() in (".csv", ".parquet", ".pq") and src.exists():
        return _from_manifest(src, path_column)
    if not src.exists():
        raise FileNotFoundError(
            f"--images {src} does not exist; give an image folder or a manifest"
        )
    raise ValueError(f"--images {src}: expected a folder or a .csv/.parquet manifest")


def _empty_skipped() -> pd.DataFrame:
    return pd.DataFrame({"path": pd.Series(dtype=str), "reason": pd.Series(dtype=str)})


def _from_folder(root: Path, label_from_folder: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows: list[dict[str, str]] = []
    rels: list[Path] = []
    skipped: list[dict[str, str]] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue  # hidden files and folders (.DS_Store, .git) are not data
        suffix = path.suffix.lower()
        reason = _folder_problem(path, suffix)
        if reason is not None:
            skipped.append({"path": display_path(path.resolve()), "reason": reason})
            continue
        row = {"path": str(path.resolve())}
        if label_from_folder and len(rel.parts) > 1:
            row["label"] = rel.parts[-2]
        rows.append(row)
        rels.append(rel)
    if not rows:
        raise ValueError(
            f"--images {display_path(root)}: no image files found (looked for "
            f"{sorted(IMAGE_SUFFIXES)}; {len(skipped)} files passed over)"
        )
    ids = _unique_ids(rels)
    records = pd.DataFrame([{"id": rid, **row} for rid, row in zip(ids, rows, strict=True)])
    if "label" in records:
        records["label"] = records["label"].astype(object)
    return records, pd.DataFrame(skipped) if skipped else _empty_skipped()


def _folder_problem(path: Path, suffix: str) -> str | None:
    """Why a file in an image folder is passed over, or None to embed it."""
    if suffix and suffix not in IMAGE_SUFFIXES:  # files without suffix may be DICOM
        return f"not an image file type ({suffix})"
    try:
        str(path.resolve()).encode("utf-8")
    except UnicodeEncodeError:
        return "file or folder name is not valid UTF-8; rename it to embed it"
    return None


def _unique_ids(rels: list[Path]) -> list[str]:
    """Relative path without suffix, as before; with the suffix where two files would share an id.

    ``one.png`` and ``one.jpg`` become ``one.png`` and ``one.jpg``; a lone ``two.png`` stays ``two``.
    """
    full = [rel.as_posix() for rel in rels]
    ids = [rel.with_suffix("").as_posix() for rel in rels]
    while True:  # full paths are unique, so each round fixes at least one id until none collide
        counts = pd.Series(ids).value_counts()
        clash = [i for i, rid in enumerate(ids) if counts[rid] > 1 and rid != full[i]]
        if not clash:
            return ids
        for i in clash:
            ids[i] = full[i]


def _from_manifest(manifest: Path, path_column: str | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    try:  # a regular file of bounded size only: a FIFO or /dev/zero would hang or fill memory
        f = open_regular_file(str(manifest), MAX_MANIFEST_BYTES, "DINOSEARCH_MAX_MANIFEST_BYTES")
    except OSError as e:
        raise ValueError(
            f"{display_path(manifest)}: cannot read manifest ({e}); give a CSV or Parquet file"
        ) from e
    try:
        with f:
            is_csv = manifest.suffix.lower() == ".csv"
            table = pd.read_csv(f) if is_csv else pd.read_parquet(f)
    except Exception as e:
        raise ValueError(f"{manifest}: cannot read manifest ({type(e).__name__}: {e})") from e
    column = path_column or next((c for c in PATH_COLUMNS if c in table.columns), None)
    if column is None or column not in table.columns:
        raise ValueError(
            f"{manifest}: no path column (looked for {path_column or PATH_COLUMNS}); "
            f"columns are {list(table.columns)}; pass --path-column"
        )
    table = table.reset_index(drop=True)
    base = manifest.resolve().parent
    problems = [_path_problem(value, column, base) for value in table[column]]
    bad = [i for i, problem in enumerate(problems) if problem is not None]
    skipped = pd.DataFrame(
        {
            "path": [_row_name(manifest, i) for i in bad],
            "reason": [str(problems[i]) for i in bad],
        },
        dtype=str,
    )
    table = table.drop(index=bad).reset_index(drop=True)
    paths = [str(p if Path(p).is_absolute() else (base / p).resolve()) for p in table[column]]
    records = table.copy()
    records["path"] = paths
    id_column = next((c for c in ID_COLUMNS if c in table.columns), None)
    if id_column is not None:
        records["id"] = table[id_column].astype(str)
    else:
        records["id"] = [Path(p).with_suffix("").name for p in table[column]]
    duplicated = records["id"][records["id"].duplicated()].tolist()
    if duplicated:
        raise ValueError(f"{manifest}: ids must be unique; repeated: {duplicated[:5]}")
    front = ["id", "path"] + (["label"] if "label" in records else [])
    records = records[front + [c for c in records.columns if c not in front]]
    return records.reset_index(drop=True), skipped if bad else _empty_skipped()


def _path_problem(value: object, column: str, base: Path) -> str | None:
    """Why a manifest row's path is unusable, or None (a missing file is reported when read)."""
    if not isinstance(value, str):
        missing = value is None or value is pd.NA or (isinstance(value, float) and value != value)
        kind = "missing (NaN)" if missing else f"not text ({value!r})"
        return f"the path in column {column!r} is {kind}; fill it in or drop the row"
    if not value.strip():
        return f"the path in column {column!r} is empty; fill it in or drop the row"
    if "\0" in value:
        return f"the path in column {column!r} contains a NUL character; fix the row"
    try:  # a FIFO or device would block or flood whoever reads it: never hand it on
        problem = not_regular((base / value).stat())
    except OSError:
        return None
    return None if problem is None else f"{display_path(base / value)} {problem}"


def _row_name(manifest: Path, index: int) -> str:
    """A manifest row as people count it: data rows from 1; for a CSV, also its line (header = 1)."""
    line = f", line {index + 2}" if manifest.suffix.lower() == ".csv" else ""
    return f"{manifest} row {index + 1}{line}"


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
