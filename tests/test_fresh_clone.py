"""The main job on a copy of the repository with nothing beside it: the bundled sample is enough."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
from helpers import TINY_CLI

from dinosearch.index import open_index

REPO = Path(__file__).resolve().parents[1]
LEFT_BEHIND = (
    ".git",
    ".venv",
    "runs",
    "indexes",
    "reports",
    "__pycache__",
    "*.egg-info",
    ".*cache",
)


def test_demo_runs_on_the_bundled_sample_in_an_empty_folder(tmp_path: Path) -> None:
    copy = Path(
        shutil.copytree(REPO, tmp_path / "dinosearch", ignore=shutil.ignore_patterns(*LEFT_BEHIND))
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dinosearch"]  # no ../shared here
    env = {**os.environ, "PYTHONPATH": str(copy), "HF_HUB_OFFLINE": "1"}
    argv = [sys.executable, "-m", "dinosearch", "demo", *TINY_CLI, "--epochs", "3"]
    argv += ["--bootstrap", "50", "--workers", "0", "--no-progress"]
    done = subprocess.run(argv, cwd=copy, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    sample = pd.read_csv(copy / "dinosearch" / "sample" / "manifest.csv")
    report = json.loads((copy / "reports" / "sample" / "report.json").read_text())
    assert report["result"]["queries"] == len(sample) == 320
    assert set(report["result"]["labels"]) == set(sample["label"])
    assert report["meta"]["columns"] == {
        "label": "label",
        "group": "patient_id",
        "stratify": "source_repo",
        "queries": None,
    }
    for name, adapter in (("sample-raw", None), ("sample-adapted", "adapter")):
        index = open_index(copy / "indexes" / name)
        assert index.count == len(sample)
        assert Path(index.manifest["features"]["path"]).is_relative_to(copy)  # built in the copy
        assert (index.manifest.get("adapter") is not None) == (adapter is not None)
    assert "untrained" in done.stdout and "open the app on them" in done.stdout
