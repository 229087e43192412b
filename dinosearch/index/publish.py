"""Versioned, atomic publishing of index folders: build aside, rename into ``versions/``, switch ``current``.

Layout of ``INDEX_DIR/``::

    current                 one line: the live version's name (replaced atomically with os.replace)
    versions/<version>/     complete, fsynced version folders (index.faiss, metadata.parquet, manifest.json)
    .staging-<pid>-<rand>/  a version being built; never read; removed if its builder died

A crash at any point leaves ``current`` naming a complete version (or absent before the first publish);
a reader that resolves ``current`` never sees a half-written folder.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dinosearch.core.storage import atomic_write, fsync_dir, pid_alive, read_small_text

CURRENT = "current"
VERSIONS = "versions"
_VERSION_RE = re.compile(r"^v(\d{6,})$")
_STAGING_RE = re.compile(r"^\.staging-(\d+)-[0-9a-f]+$")


def list_versions(index_dir: str | Path) -> list[str]:
    """Published version names, oldest first."""
    root = Path(index_dir) / VERSIONS
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p.name) for p in root.iterdir() if (m := _VERSION_RE.match(p.name))]
    return [name for _, name in sorted(found)]


def current_version(index_dir: str | Path) -> str:
    """The live version's name, read from ``INDEX_DIR/current``.

    Raises:
        FileNotFoundError: no index was ever published there.
        ValueError: ``current`` names a version that is not in ``versions/``.
    """
    root = Path(index_dir)
    pointer = root / CURRENT
    for _ in range(3):  # a reader slower than three publishes may find its version pruned: re-read
        try:
            version = read_small_text(pointer, limit=4096).strip()
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{root} is not an index folder (no {CURRENT} file); "
                "build one with `dinosearch index`"
            ) from None
        if _VERSION_RE.match(version) and (root / VERSIONS / version).is_dir():
            return version
    raise ValueError(
        f"{pointer} names version {version!r}, which is not in {root / VERSIONS}; rebuild"
    )


@contextmanager
def staging(index_dir: str | Path) -> Iterator[Path]:
    """A fresh private folder inside ``index_dir`` to build a version in; removed unless published."""
    root = Path(index_dir)
    root.mkdir(parents=True, exist_ok=True)
    _remove_dead_staging(root)
    tmp = root / f".staging-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already when published


def next_version(index_dir: str | Path) -> str:
    """The name the next published version will take (one past the newest in ``versions/``)."""
    names = list_versions(index_dir)
    number = int(_VERSION_RE.match(names[-1]).group(1)) + 1 if names else 1  # type: ignore[union-attr]
    return f"v{number:06d}"


def publish(
    index_dir: str | Path,
    staged: Path,
    version: str,
    *,
    keep: int = 3,
    base: str | None = None,
) -> None:
    """Make the complete folder ``staged`` the live ``version``.

    Steps: fsync every file and the folder, rename it to ``versions/<version>``, fsync ``versions/``,
    then atomically replace ``current``. Versions older than the newest ``keep`` are pruned.
    With ``base`` (compare-and-swap), the publish is refused unless ``current`` still names
    ``base``, the version the write started from; writers hold ``core.lock.writing`` around the
    read of ``base`` and the publish, so no other writer can slip in between.

    Raises:
        ValueError: ``version`` was published meanwhile by another build, or the live version is
            no longer ``base`` (rerun the build or append).
    """
    root = Path(index_dir)
    for f in staged.iterdir():
        with open(f, "rb+") as fh:
            os.fsync(fh.fileno())
    fsync_dir(staged)
    _check_base(root, base)
    versions = root / VERSIONS
    versions.mkdir(exist_ok=True)
    target = versions / version
    try:
        os.rename(staged, target)  # never replaces a non-empty folder
    except OSError as e:
        if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise ValueError(f"{target} was published by another build meanwhile; rerun") from e
        raise
    fsync_dir(versions)
    try:
        _check_base(root, base)
    except ValueError:
        shutil.rmtree(target, ignore_errors=True)  # never live: take it back out
        raise
    _switch_current(root, version)
    prune(root, keep=keep)


def _check_base(root: Path, base: str | None) -> None:
    """Refuse when ``base`` is given and ``current`` names another version (lost-update guard)."""
    if base is None:
        return
    live = current_version(root)
    if live != base:
        raise ValueError(
            f"{root}: the live version is {live}, not {base} this write started from "
            "(another writer published meanwhile); rerun to include its rows"
        )


def _switch_current(root: Path, version: str) -> None:
    atomic_write(root / CURRENT, lambda tmp: tmp.write_text(version + "\n"))


def prune(index_dir: str | Path, *, keep: int = 3) -> list[str]:
    """Delete all but the newest ``keep`` versions (never the live one); return the names removed."""
    root = Path(index_dir)
    live = current_version(root)
    old = [v for v in list_versions(root)[: -max(keep, 1)] if v != live]
    for v in old:
        doomed = root / VERSIONS / f".{v}.deleting"
        os.replace(root / VERSIONS / v, doomed)  # vanish from listings first, then delete
        shutil.rmtree(doomed, ignore_errors=True)
    return old


def _remove_dead_staging(root: Path) -> None:
    """Staging folders of builders that died (killed, crashed) are litter: remove them."""
    for p in root.iterdir():
        m = _STAGING_RE.match(p.name)
        if m and not pid_alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True)
    for p in (root / VERSIONS).glob(".*.deleting") if (root / VERSIONS).is_dir() else ():
        shutil.rmtree(p, ignore_errors=True)
