"""SIGKILLs at every rename, every deletion step and seeded random instants of folder swaps,
`dinosearch index` and `dinosearch embed`; queries from several processes during republishing.

One driver process (tests/kill_driver.py) imports everything once and forks a child per run; the
checks after each kill (the previous folder loads with identical answers, a re-run or ``--resume``
completes, nothing is left behind) run in children too. Its JSON summary is checked here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from orthanc import available

TESTS = Path(__file__).resolve().parent
SEED = 20260413


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if not hasattr(os, "fork"):
        pytest.skip("the kill suite forks its children")
    work = tmp_path_factory.mktemp("kills")
    one_thread = {v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    env = {
        **os.environ,
        **one_thread,  # forked children of a single-threaded parent cannot inherit a held lock
        "CUDA_VISIBLE_DEVICES": "",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)]),
    }
    scenarios = ["replace", "index", "embed", "concurrent", "remove"]
    if available() is None:
        scenarios.append("sync")
    driver = [sys.executable, str(TESTS / "kill_driver.py"), str(work), str(SEED), *scenarios]
    done = subprocess.run(driver, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(result, indent=1))  # the figures docs/reliability.md quotes (pytest -s)
    return result


@pytest.mark.parametrize(
    ("scenario", "least"),
    [("replace", 12), ("index", 15), ("embed", 30), ("remove", 40), ("sync", 20)],
)
def test_killed_runs_leave_old_or_new_and_rerun_completes(
    summary: dict[str, Any], scenario: str, least: int
) -> None:
    if scenario not in summary:
        pytest.skip(available() or f"{scenario} did not run")
    found = summary[scenario]
    assert not found["failures"], "\n".join(found["failures"])
    assert found["kills"] >= least, found


def test_remove_killed_at_20_random_instants(summary: dict[str, Any]) -> None:
    assert summary["remove"]["by_kind"].get("random", 0) >= 20, summary["remove"]


def test_queries_during_republishing_never_fail_or_mix(summary: dict[str, Any]) -> None:
    found = summary["concurrent"]
    assert not found["failures"], "\n".join(found["failures"])
    assert found["publishes"] == 12 and found["readers"] == 3
    assert found["served"] >= 12 and found["versions_seen"] >= 2, found
