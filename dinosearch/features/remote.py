"""Images on any pyarrow or fsspec filesystem (``s3://``, ``gs://``, ``hdfs://``, ``file://``, …).

Records keep full URIs in ``path``; an engine fetches a batch of files to a local temporary folder
and decodes them there with the same reader as local files (``fetch``).
"""

from __future__ import annotations

import io
import posixpath
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd
import pyarrow.fs as pafs

from dinosearch.inputs.dicomweb import is_dicomweb
from dinosearch.inputs.images import IMAGE_SUFFIXES
from dinosearch.inputs.limits import MAX_FILE_BYTES, MAX_MANIFEST_BYTES
from dinosearch.inputs.records import ID_COLUMNS, PATH_COLUMNS

FETCH_BLOCK = 1 << 20


def is_uri(text: str) -> bool:
    """True for ``scheme://…`` (not for local paths, not for Windows drive letters)."""
    scheme, sep, _ = text.partition("://")
    return bool(sep) and len(scheme) > 1 and scheme.replace("+", "").isalnum()


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for ``uri``: pyarrow's own, else fsspec's through pyarrow."""
    try:
        return pafs.FileSystem.from_uri(uri)
    except Exception:  # a scheme pyarrow does not know (or one it lacks a build for)
        try:
            import fsspec
        except ImportError as e:
            raise ValueError(f"{uri}: pyarrow cannot open it; install fsspec and its driver") from e
        fs, path = fsspec.core.url_to_fs(uri)
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def load_uri_records(
    uri: str, *, path_column: str | None = None, label_from_folder: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Records (id, path URI, [label], …) and files passed over, from a folder or manifest URI.

    The same rules as ``inputs.records.load_records``: ids are folder-relative paths without
    suffix, labels are parent folder names, manifests resolve relative paths from their folder.
    """
    fs, root = filesystem(uri)
    prefix = uri[: len(uri) - len(uri.split("://", 1)[1])]  # "s3://"
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"--images {uri} does not exist; give an image folder or manifest")
    if info.type == pafs.FileType.File:
        return _manifest(fs, root, prefix, path_column), pd.DataFrame(columns=["path", "reason"])
    rows, skipped = [], []
    for f in sorted(
        fs.get_file_info(pafs.FileSelector(root, recursive=True)), key=lambda f: f.path
    ):
        rel = posixpath.relpath(f.path, root)
        if f.type != pafs.FileType.File or any(p.startswith(".") for p in rel.split("/")):
            continue
        suffix = posixpath.splitext(rel)[1].lower()
        if suffix and suffix not in IMAGE_SUFFIXES:
            skipped.append(
                {"path": prefix + f.path, "reason": f"not an image file type ({suffix})"}
            )
            continue
        row = {"id": posixpath.splitext(rel)[0], "path": prefix + f.path}
        if label_from_folder and "/" in rel:
            row["label"] = rel.split("/")[-2]
        rows.append(row)
    if not rows:
        raise ValueError(
            f"--images {uri}: no image files found (looked for {sorted(IMAGE_SUFFIXES)})"
        )
    return pd.DataFrame(rows), pd.DataFrame(skipped, columns=["path", "reason"])


def _manifest(fs: pafs.FileSystem, path: str, prefix: str, path_column: str | None) -> pd.DataFrame:
    data = io.BytesIO()
    with fs.open_input_stream(path) as f:
        try:
            _copy_capped(f, data, MAX_MANIFEST_BYTES, "DINOSEARCH_MAX_MANIFEST_BYTES")
        except ValueError as e:
            raise ValueError(f"{prefix}{path}: manifest {e}") from e
    data.seek(0)
    table = pd.read_csv(data) if path.endswith(".csv") else pd.read_parquet(data)
    column = path_column or next((c for c in PATH_COLUMNS if c in table.columns), None)
    if column is None or column not in table.columns:
        raise ValueError(
            f"{prefix}{path}: no path column (looked for {path_column or PATH_COLUMNS}); "
            f"columns are {list(table.columns)}; pass --path-column"
        )
    base = posixpath.dirname(path)
    names = table[column].astype(str)
    records = table.copy()
    records["path"] = [
        p if is_uri(p) else prefix + posixpath.normpath(posixpath.join(base, p)) for p in names
    ]
    id_column = next((c for c in ID_COLUMNS if c in table.columns), None)
    records["id"] = table[id_column].astype(str) if id_column else names.map(_stem)
    if records["id"].duplicated().any():
        raise ValueError(f"{prefix}{path}: ids must be unique; pass a manifest with an id column")
    front = ["id", "path"] + (["label"] if "label" in records else [])
    return records[front + [c for c in records.columns if c not in front]].reset_index(drop=True)


def _stem(path: str) -> str:
    return posixpath.splitext(posixpath.basename(path))[0]


def fetch(
    paths: list[str], folder: str | Path, max_bytes: int | None = None
) -> tuple[list[str], dict[int, str]]:
    """Copy URI ``paths`` into ``folder``: (local paths, {position: reason} for files not fetched).

    Local paths pass through. A copy keeps its suffix, so the reader still tells DICOM by name.
    Each object is streamed in 1 MiB blocks and given up once past ``max_bytes`` (default: the
    limit of a local image file, DINOSEARCH_MAX_FILE_BYTES), so a huge or endless object never fills memory or disk.
    """
    cap = MAX_FILE_BYTES if max_bytes is None else max_bytes
    local, failures = [], {}
    for i, path in enumerate(paths):
        if not is_uri(path) or is_dicomweb(path):  # read_image fetches DICOMweb paths itself
            local.append(path)
            continue
        target = Path(folder) / f"{i}{posixpath.splitext(path)[1]}"
        try:
            fs, inner = filesystem(path)
            with fs.open_input_stream(inner) as src, target.open("wb") as dst:
                _copy_capped(src, dst, cap, "DINOSEARCH_MAX_FILE_BYTES")
        except Exception as e:  # a missing or unreadable object is one skipped file, not a failure
            target.unlink(missing_ok=True)
            failures[i] = f"cannot fetch file ({type(e).__name__}: {e})"
        local.append(str(target))
    return local, failures


def _copy_capped(src: Any, dst: BinaryIO, max_bytes: int, setting: str) -> None:
    """Copy ``src`` to ``dst`` block by block; ValueError once more than ``max_bytes`` arrive
    (``setting``: the environment variable that raises the limit)."""
    copied = 0
    while block := src.read(min(FETCH_BLOCK, max_bytes + 1 - copied)):
        copied += len(block)
        if copied > max_bytes:
            raise ValueError(
                f"object is over the {max_bytes:,}-byte limit; raise {setting} to read it"
            )
        dst.write(block)


def temporary_folder() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="dinosearch-fetch-")
