"""evaluate.py on arrays (ranking, whitening, bootstrap, protocols, strata), report.py and `dinosearch eval`."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from dinosearch.core import metrics
from dinosearch.core.ranking import Side, rank_exact
from dinosearch.evaluate.ab import evaluate
from dinosearch.evaluate.baselines import fit_whitening
from dinosearch.evaluate.bootstrap import bootstrap
from dinosearch.evaluate.report import markdown, write_report


def synthetic(n: int = 120, dim: int = 16, seed: int = 0):
    """Labels carried by a small signal; raw = signal + big nuisance, adapted = signal + small noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=n)
    centres = rng.normal(size=(3, dim)) * 3
    raw = centres[labels] * 0.15 + rng.normal(size=(n, dim)) * 3
    adapted = centres[labels] + rng.normal(size=(n, dim)) * 0.8
    groups = np.repeat(np.arange(n // 2), 2)  # two films per patient
    return raw.astype(np.float32), adapted.astype(np.float32), [f"c{i}" for i in labels], groups


def test_rank_exact_matches_brute_force_with_exclusions() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 5)).astype(np.float32)
    ids = np.arange(30).astype(str)
    groups = rng.integers(0, 10, size=30).astype(object)
    strata = rng.integers(0, 3, size=30).astype(str)
    ind, _ = metrics.label_indicator(["a"] * 30)
    side = Side(ids, ind, groups, strata)
    for within in (False, True):
        ranked = rank_exact(x, x, 8, side, side, within_strata=within, chunk=7)
        for q in range(30):
            ok = [
                g
                for g in np.argsort(-(x @ x[q]), kind="stable")
                if g != q and groups[g] != groups[q] and (not within or strata[g] == strata[q])
            ][:8]
            assert ranked[q, : len(ok)].tolist() == ok
            assert (ranked[q, len(ok) :] == -1).all()


def test_whitening_gives_identity_covariance_on_the_gallery() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6)) + 5
    mean, proj = fit_whitening(x, shrinkage=0.0)
    white = (x - mean) @ proj
    np.testing.assert_allclose(np.cov(white.T), np.eye(6), atol=1e-3)
    assert fit_whitening(x, dim=3)[1].shape == (6, 3)


def test_bootstrap_is_paired_and_resamples_whole_groups() -> None:
    rng = np.random.default_rng(0)
    a = rng.random(200)
    same = bootstrap({"adapted": {"m": a}, "raw": {"m": a.copy()}}, None, [("adapted", "raw")])
    assert same["adapted-raw"]["m"] == {"mean": 0.0, "lo": 0.0, "hi": 0.0}
    assert same["adapted"]["m"]["lo"] < a.mean() < same["adapted"]["m"]["hi"]
    # 20 groups of 10 identical values: resampling groups must give a wider interval than queries
    values = np.repeat(rng.integers(0, 2, 20).astype(float), 10)
    groups = np.repeat(np.arange(20), 10)
    by_query = bootstrap({"x": {"m": values}}, None, [])["x"]["m"]
    by_group = bootstrap({"x": {"m": values}}, groups, [])["x"]["m"]
    assert by_group["hi"] - by_group["lo"] > 2 * (by_query["hi"] - by_query["lo"])


def test_adapted_beats_raw_and_interval_excludes_zero() -> None:
    raw, adapted, labels, groups = synthetic()
    r = evaluate(raw, adapted, labels, groups=groups, ks=(1, 5), n_boot=300)
    assert r["protocol"] == "leave-one-out" and r["queries"] == 120 and r["query_groups"] == 60
    diff = r["overall"]["adapted-raw"]["precision@5"]
    assert diff["lo"] > 0
    assert set(r["overall"]) >= {"raw", "centred", "whitened", "adapted", "adapted-whitened"}
    assert set(r["per_label"]["adapted"]) == {"c0", "c1", "c2"}


def test_query_set_protocol_uses_only_the_gallery() -> None:
    raw, adapted, labels, groups = synthetic()
    mask = np.zeros(len(raw), dtype=bool)
    mask[:30] = True
    r = evaluate(raw, adapted, labels, groups=groups, query_mask=mask, ks=(5,), n_boot=50)
    assert r["protocol"] == "query-set-vs-gallery"
    assert (r["queries"], r["gallery"]) == (30, 90)
    with pytest.raises(ValueError, match="rows differ"):
        evaluate(raw, adapted[:-1], labels)


def test_confounded_strata_are_flagged_and_within_stratum_is_reported() -> None:
    raw, adapted, labels, groups = synthetic()
    strata = [f"source-{lab}" for lab in labels]  # label fully predicted by the source
    r = evaluate(raw, adapted, labels, groups=groups, strata=strata, ks=(1, 10), n_boot=50)
    st = r["strata"]
    assert st["source_only_chance"] == pytest.approx(1.0)
    assert r["chance_precision"] < 0.5
    assert len(st["per_stratum"]) == 3
    assert st["within"]["overall"]["adapted"]["precision@10"]["mean"] == pytest.approx(1.0)
    r["stratify_column"] = "source_repo"
    text = markdown(r, {"random_init": True})
    assert "confounded with source_repo" in text and "untrained" in text


def test_report_files(tmp_path) -> None:
    raw, adapted, labels, groups = synthetic(60)
    labels[0] = None  # unlabelled rows are left out, NaN-free JSON
    r = evaluate(
        raw, adapted, labels, groups=groups, strata=np.array(["s"] * 60), ks=(1, 5), n_boot=50
    )
    assert r["queries"] == 59
    out = write_report(
        r, {"random_init": True, "raw_index": {"path": "indexes/a"}}, tmp_path / "rep"
    )
    data = json.loads((out / "report.json").read_text(), parse_constant=pytest.fail)
    assert data["meta"]["raw_index"]["path"] == "indexes/a"
    assert (out / "report.png").read_bytes()[:4] == b"\x89PNG"
    assert "randomly initialised (untrained)" in (out / "report.md").read_text()


def test_eval_cli_on_tiny_indexes(tmp_path, tiny_demo, capsys) -> None:
    from dinosearch.cli import main

    a, b = tiny_demo / "indexes/t-raw", tiny_demo / "indexes/t-adapted"
    out = tmp_path / "rep"
    argv = [
        "eval",
        "--raw",
        str(a),
        "--adapted",
        str(b),
        "--k",
        "1,3",
        "--bootstrap",
        "50",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "precision@3" in printed and "untrained" in printed and "Within-stratum" in printed
    meta = json.loads((out / "report.json").read_text())["meta"]
    assert meta["raw_index"]["path"] == str(a.resolve())
    assert meta["adapted_index"]["version"] and meta["columns"]["group"] == "patient_id"
    assert meta["whitening"]["source"].startswith("features folder")
    assert main([*argv, "--label-column", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main([*argv, "--group-column", "", "--queries", "source_repo=s0"]) == 0
    result = json.loads((out / "report.json").read_text())["result"]
    assert result["protocol"] == "query-set-vs-gallery" and result["query_groups"] is None
    assert main(["eval", "--raw", str(b), "--adapted", str(b)]) == 2  # raw must have no adapter


def test_eval_reads_the_features_folder_and_says_where_it_went(tmp_path, tiny_demo, capsys) -> None:
    from dinosearch.cli import main

    root = tmp_path / "copy"
    shutil.copytree(tiny_demo / "indexes", root / "indexes", symlinks=True)
    features = tiny_demo / "runs/t/features"
    moved = tmp_path / "moved-features"
    shutil.copytree(features, moved)
    argv = [
        "eval",
        "--raw",
        str(root / "indexes/t-raw"),
        "--adapted",
        str(root / "indexes/t-adapted"),
    ]
    argv += ["--k", "1", "--bootstrap", "10", "--out", str(tmp_path / "rep")]
    features.rename(tmp_path / "hidden")  # the folder both indexes name is gone …
    try:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert str(features) in err and "--features" in err
        assert main([*argv, "--features", str(moved)]) == 0  # … and found where it moved
    finally:
        (tmp_path / "hidden").rename(features)
    meta = json.loads((tmp_path / "rep" / "report.json").read_text())["meta"]
    assert meta["whitening"]["source"] == f"features folder {moved}"
