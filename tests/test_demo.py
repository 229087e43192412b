"""`dinosearch demo` end to end on the tiny backbone: builds everything, then reuses what still matches."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from helpers import demo_argv, precision_at

from dinosearch.adapt.adapter import load_adapter
from dinosearch.adapt.vectors import to_vectors
from dinosearch.cli import main
from dinosearch.demo import training_subset
from dinosearch.features.folder import load_features


def test_demo_builds_everything(tiny_demo) -> None:
    for path in (
        "runs/t/features/manifest.json",
        "runs/t/adapter/adapter.json",
        "indexes/t-raw/current",
        "indexes/t-adapted/current",
        "reports/t/report.png",
        "reports/t/report.md",
    ):
        assert (tiny_demo / path).exists(), path
    meta = json.loads((tiny_demo / "reports/t/report.json").read_text())["meta"]
    assert meta["raw_index"]["path"] == str((tiny_demo / "indexes/t-raw").resolve())
    assert meta["random_init"] is True
    assert meta["columns"] == {
        "label": "label",
        "group": "patient_id",
        "stratify": "source_repo",
        "queries": None,
    }


def test_demo_report_scores_the_brute_force_ranking(tiny_demo) -> None:
    result = json.loads((tiny_demo / "reports/t/report.json").read_text())["result"]
    features = load_features(tiny_demo / "runs/t/features")
    labels = features.metadata["label"].to_numpy()
    groups = features.metadata["patient_id"].to_numpy()
    adapter = load_adapter(tiny_demo / "runs/t/adapter")
    for method, vectors in (
        ("raw", to_vectors(features.features)),
        ("adapted", to_vectors(features.features, adapter)),
    ):
        for k in (1, 3):
            want = precision_at(vectors, labels, groups, k)
            got = result["overall"][method][f"precision@{k}"]["mean"]
            assert got == pytest.approx(want, abs=1e-9), (method, k)
    # the films of one label cluster under the tiny backbone, so a wrong ranking scores differently
    # (the demo pools the mean: 11 of 12 top-1 hits; CLS pooling had 12)
    assert precision_at(to_vectors(features.features), labels, groups, 1) >= 0.9


def test_demo_rerun_reuses_what_still_matches(tiny_demo, capsys) -> None:
    assert main(demo_argv(tiny_demo)) == 0
    again = capsys.readouterr().out
    assert again.count("reusing") == 4, again  # features, raw index, adapter, adapted index
    assert "untrained" in again
    command = again.split("open the app on them:\n")[1].splitlines()[0].split()
    assert command[1:4] == ["-m", "dinosearch", "app"] and command[4] == "--indexes"
    assert Path(command[0]).resolve().is_file()  # this interpreter: works without a clone
    assert Path(command[-1]).resolve() == (tiny_demo / "indexes").resolve()

    assert main(demo_argv(tiny_demo, "--epochs", "3")) == 0
    changed = capsys.readouterr().out
    assert "reusing features" in changed and "reusing index" in changed  # the raw one
    assert "training an adapter" in changed and "building index" in changed
    assert "reusing the 1 cached views per image" in changed  # retraining: seconds, no backbone
    report = json.loads((tiny_demo / "reports" / "t" / "report.json").read_text())
    assert report["config"]["job"] == "demo" and report["config"]["epochs"] == 3

    assert main(demo_argv(tiny_demo, "--views", "2")) == 0
    assert "these settings need new views (K=2" in capsys.readouterr().out
    assert main(demo_argv(tiny_demo)) == 0  # back to the fixture's adapter for other tests


def test_training_subset_keeps_whole_groups() -> None:
    md = pd.DataFrame({"id": [str(i) for i in range(100)], "g": [i // 4 for i in range(100)]})
    sub = training_subset(md, 30, "g", seed=0)
    assert 24 <= len(sub) <= 30
    assert sub.groupby("g").size().eq(4).all()
    assert training_subset(md, None, "g", 0) is md
