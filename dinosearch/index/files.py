"""Verified writes of a version's data files: every write error raises, nothing unverified is published.

``faiss.write_index(index, filename)`` reports an error at ``fclose`` (a disk that fills at that
instant, a quota that surfaces only at close) by printing "close error" and raising nothing. Here
faiss writes through a Python callback into a file we own: every ``write``, the ``fsync`` and the
``close`` raise ``OSError`` (ENOSPC, EROFS, EDQUOT), and the size on disk is compared with the bytes
faiss produced before the file is checksummed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import pyarrow as pa
import pyarrow.parquet as pq

from dinosearch.core.storage import sha256_file, write_json
from dinosearch.index.handle import DATA_FILES, IndexHandle
from dinosearch.index.publish import next_version, publish, staging


def write_index_file(index: faiss.Index, path: Path) -> int:
    """Write ``index`` to ``path``, size-checked (``publish`` fsyncs it); → the bytes written.

    Raises:
        OSError: any write, flush, fsync or close error (ENOSPC, EROFS, EDQUOT…), errno kept.
        ValueError: the file on disk is not the size faiss wrote (rebuild).
    """
    written = 0
    errors: list[OSError] = []
    try:
        with open(path, "wb") as f:

            def write(chunk: bytes) -> None:
                nonlocal written
                try:
                    f.write(chunk)
                except OSError as e:
                    errors.append(e)
                    raise
                written += len(chunk)

            try:
                faiss.write_index(index, faiss.PyCallbackIOWriter(write))  # type: ignore[attr-defined]
            except Exception as e:  # faiss wraps the callback's error in a RuntimeError
                if errors:
                    raise errors[0] from e
                raise
            f.flush()  # publish() fsyncs it: an fsync error raises there, before the switch
    except OSError as e:
        if e.filename is None:  # name the file in the one-line message
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise
    _check_size(path, written)
    return written


def write_table_file(table: pa.Table, path: Path) -> None:
    """Write ``table`` as Parquet to ``path``; its footer read back must show every row.

    Raises:
        OSError: any write, fsync or close error, errno kept.
        ValueError: the file read back does not hold ``table.num_rows`` rows (rebuild).
    """
    pq.write_table(table, path)
    try:
        rows = pq.ParquetFile(path).metadata.num_rows
    except (pa.ArrowException, OSError) as e:
        raise ValueError(f"{path}: unreadable right after writing ({e}); rebuild") from e
    if rows != table.num_rows:
        raise ValueError(f"{path}: {rows} rows on disk, {table.num_rows} written; rebuild")


def _check_size(path: Path, expected: int) -> None:
    size = path.stat().st_size
    if size != expected or expected == 0:
        raise ValueError(f"{path}: {size} bytes on disk, {expected} written; rebuild the index")


def write_version(
    out: Path,
    index: faiss.Index,
    table: pa.Table,
    manifest: dict[str, Any],
    keep: int,
    base: str | None = None,
) -> IndexHandle:
    """Write the version's files to staging, verify and checksum them, publish it as ``current``
    (refused unless ``current`` is still ``base`` when given)."""
    with staging(out) as tmp:
        version = next_version(out)
        write_index_file(index, tmp / "index.faiss")
        write_table_file(table, tmp / "metadata.parquet")
        manifest = {
            **manifest,
            "version": version,
            "count": int(index.ntotal),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "checksums": {n: sha256_file(tmp / n) for n in DATA_FILES},
        }
        write_json(tmp / "manifest.json", manifest)
        publish(out, tmp, version, keep=keep, base=base)
    return IndexHandle(out, version, index, table, manifest)


def concat_rows(base: IndexHandle, table: pa.Table, path: str) -> pa.Table:
    """The live version's rows then ``table``'s; a column of another type is one clear error."""
    try:
        return pa.concat_tables([base.table, table], promote_options="permissive")
    except (pa.ArrowTypeError, pa.ArrowInvalid) as e:
        had = base.table.schema
        clash = [
            f"{f.name!r} ({had.field(f.name).type} there, {f.type} here)"
            for f in table.schema
            if f.name in had.names and had.field(f.name).type != f.type
        ]
        raise ValueError(
            f"cannot append {Path(path) / 'metadata.parquet'} to {base.manifest_path}: column "
            f"{', '.join(clash) or '?'} has another type; make the column's type agree and re-embed"
        ) from e
