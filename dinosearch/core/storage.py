"""Crash-safe file writing: write to a temporary name, fsync, rename; folder swaps; JSON and checksums.

A writer killed at any instant leaves the old file or folder, or the new one, under its name; what
it leaves beside it (``.NAME.tmp-PID``, ``.NAME.old-PID``, ``.NAME.deleting-PID``) is recovered or
deleted by the next writer (``clean_leftovers``) once process PID is gone.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import glob
import hashlib
import json
import os
import shutil
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    """True while process ``pid`` exists (ours included): its temporary files are not litter yet."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _leftovers(path: Path, tag: str) -> list[Path]:
    """``.NAME.<tag>-PID`` beside ``path`` whose process PID is gone, newest first."""
    if not path.parent.is_dir():
        return []
    found = []
    for p in path.parent.glob(f".{glob.escape(path.name)}.{tag}-*"):
        pid = p.name.rpartition("-")[2]
        if pid.isdigit() and not pid_alive(int(pid)):
            found.append(p)
    return sorted(found, key=_mtime, reverse=True)


def _mtime(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except OSError:  # removed meanwhile by another cleaner
        return 0.0


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _restore(old: Path, path: Path) -> None:
    try:
        os.rename(old, path)
        fsync_dir(path.parent)
    except OSError:  # another process restored or removed it first: keep what is there
        pass


def clean_leftovers(path: Path) -> None:
    """Finish what a killed writer of ``path`` left: put the old folder back if no new one arrived
    (a kill between ``replace_dir``'s renames), delete stale temporary and half-deleted copies."""
    for old in _leftovers(path, "old"):
        if not os.path.lexists(path):
            _restore(old, path)  # the newest old copy returns
        else:
            _remove(old)
    for tag in ("tmp", "deleting"):
        for p in _leftovers(path, tag):
            _remove(p)


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` then rename tmp onto ``path``: readers see the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically write pretty, key-sorted JSON."""
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))


SMALL_FILE_BYTES = 64 << 20  # a pointer, manifest or report JSON is far smaller


def read_small_text(path: Path, limit: int = SMALL_FILE_BYTES) -> str:
    """The UTF-8 text of ``path`` if it is a regular file of at most ``limit`` bytes.

    Opened non-blocking and checked on the open descriptor, so a FIFO never hangs the reader and a
    device (``/dev/zero``) is never read.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a regular file, or larger than ``limit`` (naming the file and what to do).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path}: not a regular file; delete it and rebuild what wrote it")
        if info.st_size > limit:
            raise ValueError(
                f"{path}: {info.st_size} bytes, more than the {limit} it may hold; rebuild it"
            )
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ValueError(f"{path}: grew past {limit} bytes while read; rebuild it")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e}); rebuild it") from e


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; ValueError naming the file when it is unreadable or not an object."""
    try:
        data = json.loads(read_small_text(path))
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: unreadable JSON ({e}); rebuild it") from e
    if not isinstance(data, dict):
        raise ValueError(
            f"{path}: expected a JSON object, found a {type(data).__name__}; rebuild it"
        )
    return data


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


_RENAME_EXCHANGE = 2  # linux/fs.h


@functools.cache
def _renameat2() -> Any:
    """libc's renameat2, or None (not Linux; glibc < 2.28; musl)."""
    if not sys.platform.startswith("linux"):
        return None
    return getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    at_fdcwd = -100
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):  # this filesystem cannot swap
        return False
    raise OSError(err, f"cannot swap {a} and {b}: {os.strerror(err)}")


def replace_dir(staged: Path, target: Path) -> None:
    """Put the fully written folder ``staged`` at ``target``; the old ``target`` is deleted after.

    ``target`` names the old folder or the new one at every instant: the two are swapped in one
    ``renameat2(RENAME_EXCHANGE)``. Where the filesystem cannot swap, the old folder is renamed aside
    to ``.TARGET.old-PID`` first; a kill in between leaves it there, and ``clean_leftovers`` (run
    here, by ``atomic_write`` and by readers of a missing folder) puts it back.
    """
    clean_leftovers(target)
    for f in staged.iterdir():
        if f.is_file():
            with open(f, "rb+") as fh:
                os.fsync(fh.fileno())
    fsync_dir(staged)
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if not os.path.lexists(target):
        os.rename(staged, target)
    elif exchange(staged, target):
        os.rename(staged, old)  # staged now holds the previous folder
    else:
        os.rename(target, old)
        os.rename(staged, target)
    fsync_dir(target.parent)
    _remove(old)


def remove_dir(path: Path) -> None:
    """Delete a folder so that a kill midway leaves nothing half-deleted under its name."""
    if not os.path.lexists(path):
        return
    doomed = path.with_name(f".{path.name}.deleting-{os.getpid()}")
    os.rename(path, doomed)
    _remove(doomed)
