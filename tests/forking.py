"""Run a function in a forked child that may SIGKILL itself at the Nth rename or unlink.

Forked from a process that imported everything but runs no threads (``OMP_NUM_THREADS=1``), a child
costs milliseconds instead of the seconds a fresh interpreter needs to import torch and faiss.
"""

from __future__ import annotations

import os
import pickle
import signal
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dinosearch.core.storage as storage

RENAMES = ("os.replace", "os.rename", "storage.exchange")  # every step that moves a name
DELETES = ("os.unlink", "os.rmdir")  # every step of a deletion (shutil.rmtree included)


@dataclass(frozen=True)
class Outcome:
    status: str  # "ok", "killed", "error" or "hung"
    value: Any = None  # fn's return value ("ok") or the traceback ("error")
    seconds: float = 0.0


class Trap:
    """Counts calls to the functions named in ``names``; SIGKILLs the process at call ``at``
    (before it runs, or just after with ``after``). ``at=0`` only counts."""

    def __init__(self, names: tuple[str, ...], at: int = 0, *, after: bool = False) -> None:
        self.names, self.at, self.after, self.calls = names, at, after, 0

    def install(self) -> None:
        for dotted in self.names:
            owner, attr = (os if dotted.startswith("os.") else storage), dotted.split(".")[1]
            setattr(owner, attr, self._wrap(getattr(owner, attr)))

    def _wrap(self, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.calls == self.at and not self.after:
                os.kill(os.getpid(), signal.SIGKILL)
            result = real(*args, **kwargs)
            if self.calls == self.at and self.after:
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        return call


def start(fn: Callable[[], Any], *, trap: Trap | None = None) -> tuple[int, str, float]:
    """Fork a child running ``fn()`` (with ``trap`` installed); → (pid, result file, start time)."""
    fd, out = tempfile.mkstemp(suffix=".pickle")
    os.close(fd)
    began = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        _child(fn, trap, out)
    return pid, out, began


def finish(child: tuple[int, str, float], timeout: float = 60.0) -> Outcome:
    """Wait for a ``start``ed child (SIGKILLed after ``timeout`` seconds: "hung")."""
    pid, out, began = child
    status = _wait(pid, timeout)
    seconds = time.perf_counter() - began
    try:
        if status is None:
            return Outcome("hung", seconds=seconds)
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
            return Outcome("killed", seconds=seconds)
        with open(out, "rb") as f:
            kind, value = pickle.load(f)
        return Outcome(kind, value, seconds)
    except (EOFError, pickle.UnpicklingError):
        return Outcome("error", f"child exited with status {status} and no result", seconds)
    finally:
        os.unlink(out)


def in_child(
    fn: Callable[[], Any],
    *,
    trap: Trap | None = None,
    kill_after: float | None = None,
    timeout: float = 60.0,
) -> Outcome:
    """``fn()`` in a forked child (with ``trap`` installed, or SIGKILLed ``kill_after`` seconds in)."""
    child = start(fn, trap=trap)
    if kill_after is not None:
        time.sleep(kill_after)
        os.kill(child[0], signal.SIGKILL)  # a child that finished is a zombie: harmless
    return finish(child, timeout)


def _one_thread() -> None:
    """A forked child of a process whose OpenMP pool ran (torch, faiss) hangs at its next parallel
    region (libgomp's pool does not survive fork): the child computes on one thread."""
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    if "faiss" in sys.modules:
        sys.modules["faiss"].omp_set_num_threads(1)


def _child(fn: Callable[[], Any], trap: Trap | None, out: str) -> None:
    code = 1
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        _one_thread()
        if trap is not None:
            trap.install()
        result: tuple[str, Any] = ("ok", fn())
        code = 0
    except BaseException:
        result = ("error", traceback.format_exc())
    try:
        with open(out, "wb") as f:
            pickle.dump(result, f)
    finally:
        os._exit(code)


def _wait(pid: int, timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        time.sleep(0.002)


def count_calls(fn: Callable[[], Any], names: tuple[str, ...]) -> tuple[Outcome, int]:
    """Run ``fn`` once in a child with a counting trap: its outcome and how many calls it made."""
    trap = Trap(names)

    def counted() -> tuple[Any, int]:
        return fn(), trap.calls

    outcome = in_child(counted, trap=trap)
    if outcome.status != "ok":
        return outcome, 0
    value, calls = outcome.value
    return Outcome("ok", value, outcome.seconds), calls
