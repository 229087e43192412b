"""Peak memory of one call, measured in a fresh Python process (issue 13's memory bound).

``probe("pkg.module:function", *args)`` runs the call in a child process and returns how it ended
and its peak resident memory (VmHWM, or ru_maxrss off Linux) above the child's resident memory
right before the call (modules the call needs are imported first, so imports don't count). Run as
a script, this file is the child.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import resource
import subprocess
import sys
from dataclasses import dataclass

WARM = (
    "numpy",
    "PIL.Image",
    "PIL.PngImagePlugin",
    "pydicom",
    "pydicom.filereader",
    "pydicom.pixels",
)


@dataclass(frozen=True)
class Probe:
    outcome: str  # "ok" or "<ExceptionType>: message"
    peak_bytes: int  # peak RSS during the call minus RSS right before it


def probe(target: str, *args: str, timeout: float = 60.0) -> Probe:
    """Run ``target(*args)`` in a new interpreter; raise if it crashes or outlives ``timeout``."""
    return probe_all({"call": (target, *args)}, timeout=timeout)["call"]


def probe_all(calls: dict[str, tuple[str, ...]], timeout: float = 60.0) -> dict[str, Probe]:
    """``probe`` for several calls at once, each ``name: (target, *args)``, in parallel processes."""
    children = {
        name: subprocess.Popen(
            [sys.executable, __file__, json.dumps({"target": call[0], "args": list(call[1:])})],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, call in calls.items()
    }
    results = {}
    for name, child in children.items():
        try:
            out, err = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            raise AssertionError(f"{name}: {calls[name]} still running after {timeout} s") from None
        if child.returncode != 0:
            raise AssertionError(
                f"{name}: {calls[name]} crashed (exit {child.returncode}): {err[-2000:]}"
            )
        result = json.loads(out.strip().splitlines()[-1])
        results[name] = Probe(result["outcome"], result["peak_bytes"])
    return results


def _rss_now() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the peak so far stands in for now (over-counts nothing)
        return _rss_peak()


def _rss_peak() -> int:
    """Peak RSS of this process image. Linux's ru_maxrss survives exec, so a child started from a
    big pytest process would report the parent's size; VmHWM belongs to the new image alone."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def _child(spec: dict) -> dict:
    module, name = spec["target"].split(":")
    for warm in (*WARM, module):
        importlib.import_module(warm)
    func = getattr(importlib.import_module(module), name)
    gc.collect()
    before = _rss_now()
    try:
        func(*spec["args"])
        outcome = "ok"
    except Exception as e:
        outcome = f"{type(e).__name__}: {e}"
    return {"outcome": outcome, "peak_bytes": _rss_peak() - before}


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))))


BOUND = 512 << 20  # docs/reliability.md: every hostile file stays under this above baseline


def assert_bounded(case: str, result: Probe, completes: set[str]) -> None:
    """``case`` decoded (when in ``completes``) or was refused as an image, within ``BOUND``."""
    if case in completes:
        assert result.outcome == "ok", result.outcome
    else:
        assert result.outcome.startswith("ImageReadError: "), result.outcome
    assert result.peak_bytes <= BOUND, f"{case}: peak {result.peak_bytes / 2**20:.0f} MiB"
