"""One writer per folder: an exclusive ``filelock`` beside the folder, with who holds it on record.

The lock file is ``.NAME.lock`` in the folder's parent, so replacing the folder whole (``replace_dir``)
never deletes it; ``.NAME.lock.holder`` says which process holds it (pid, command, start time) for the
one-line message a waiting writer gets after its timeout. Readers never take the lock.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from filelock import FileLock, Timeout

from dinosearch.core.env import env_int

DEFAULT_TIMEOUT = float(env_int("DINOSEARCH_LOCK_TIMEOUT"))  # seconds


def lock_path(folder: Path, scope: str = "") -> Path:
    """``.NAME.lock`` beside ``folder`` (outside it: a whole-folder swap keeps it);
    ``.NAME.SCOPE.lock`` for a second, independent lock on the same folder (e.g. a whole sync pass)."""
    folder = Path(folder).absolute()
    return folder.with_name(f".{folder.name}{'.' + scope if scope else ''}.lock")


def _holder_path(folder: Path, scope: str = "") -> Path:
    lock = lock_path(folder, scope)
    return lock.with_name(lock.name + ".holder")


def holder(folder: Path, scope: str = "") -> dict[str, object]:
    """What the last writer of ``folder`` recorded (pid, command, since); empty when unknown."""
    path = _holder_path(folder, scope)
    try:
        if not path.is_file() or path.stat().st_size > 4096:
            return {}
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _busy_message(folder: Path, command: str, timeout: float, scope: str) -> str:
    info = holder(folder, scope)
    who = str(info.get("command") or command)
    started = info.get("since")
    since = (
        time.strftime("%H:%M:%S", time.localtime(started)) if isinstance(started, float) else "?"
    )
    pid = info.get("pid", "?")
    return (
        f"another `dinosearch {who}` is writing {folder} (pid {pid}, since {since}); "
        f"wait for it or stop it (waited {timeout:g} s)"
    )


@contextmanager
def writing(
    folder: Path, command: str, *, timeout: float = DEFAULT_TIMEOUT, scope: str = ""
) -> Iterator[None]:
    """Hold the one-writer lock of ``folder`` while the block runs (``command``: e.g. "index").

    Waits up to ``timeout`` seconds for another writer (any process, this one included: the lock is
    not re-entrant, so never nest two ``writing`` of one folder and scope) to finish. A ``scope``
    names a separate lock on the folder: ``sync`` holds ``scope="sync"`` for its whole pass and the
    folder's own lock only while it swaps the folder, so an ``embed`` or ``remove`` can wait between.

    Raises:
        ValueError: still held after ``timeout``: "another `dinosearch index` is writing OUT (pid N,
            since HH:MM:SS); wait for it or stop it".
    """
    folder = Path(folder).absolute()
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(
        str(lock_path(folder, scope)),
        timeout=timeout,
        thread_local=False,
        preserve_lock_file=True,  # deleting it on release would let two writers lock two inodes
        poll_interval=0.01,
    )
    try:
        lock.acquire()
    except Timeout as e:
        raise ValueError(_busy_message(folder, command, timeout, scope)) from e
    try:
        _record_holder(folder, command, scope)
        yield
    finally:
        lock.release()


def _record_holder(folder: Path, command: str, scope: str) -> None:
    """Write who holds the lock (best effort: a full disk must not stop the job here)."""
    data = {"pid": os.getpid(), "command": command, "since": time.time()}
    with suppress(OSError):
        _holder_path(folder, scope).write_text(json.dumps(data), encoding="utf-8")
