"""Folders written by dinosearch 0.1 (tests/fixtures/v0_1) still load, search and evaluate the same."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_ranked, brute_force_ranking

from dinosearch.adapt.adapter import load_adapter
from dinosearch.adapt.vectors import to_vectors
from dinosearch.core.storage import sha256_file
from dinosearch.evaluate.indexes import evaluate_indexes
from dinosearch.features.folder import load_features
from dinosearch.search import Searcher

FIXTURE = Path(__file__).parent / "fixtures" / "v0_1"


@pytest.fixture()
def old(tmp_path: Path) -> Path:
    """A copy of the 0.1 folders at a path other than the one their manifests name."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "v0_1", symlinks=True))


def test_features_and_adapter_load_and_give_the_indexed_vectors(old: Path, tiny_backbone) -> None:
    features = load_features(old / "features", verify=True)
    assert features.features.shape == (12, 32) and len(features.metadata) == 12
    adapter = load_adapter(old / "adapter", backbone_fingerprint=tiny_backbone.fingerprint)
    adapted = Searcher(old / "indexes" / "adapted", backbone=tiny_backbone)
    np.testing.assert_allclose(
        to_vectors(features.features, adapter), adapted.handle.vectors(), atol=1e-6
    )
    raw = Searcher(old / "indexes" / "raw", backbone=tiny_backbone)
    np.testing.assert_allclose(to_vectors(features.features), raw.handle.vectors(), atol=1e-6)


def test_old_indexes_answer_image_queries_in_brute_force_order(old: Path, tiny_backbone) -> None:
    for name in ("raw", "adapted"):
        searcher = Searcher(old / "indexes" / name, backbone=tiny_backbone)
        film = old / "images" / "normal_1.png"
        result = searcher.search_image(film, k=5)
        vectors = searcher.handle.vectors()
        row = int(np.flatnonzero(searcher.metadata["path"].str.endswith("normal_1.png"))[0])
        want, _ = brute_force_ranking(vectors, vectors[row])
        assert result.ids[0] == row
        assert_ranked(result.ids, result.scores, want[:5])


def test_old_report_is_readable(old: Path) -> None:
    report = json.loads((old / "report" / "report.json").read_text())
    assert report["result"]["ks"] == [1, 3]
    assert set(report["result"]["methods"]) == {"raw", "centred", "whitened", "adapted"}


def test_old_indexes_evaluate_from_their_features_to_the_old_report(old: Path) -> None:
    before = json.loads((old / "report" / "report.json").read_text())["result"]["overall"]
    args = (old / "indexes" / "raw", old / "indexes" / "adapted", old / "new-report")
    evaluated = evaluate_indexes(
        *args, ks=[1, 3], n_boot=20, features=old / "features", adapter=old / "adapter"
    )
    result, meta = evaluated.metrics, evaluated.meta
    assert meta["whitening"]["source"] == f"features folder {old / 'features'}"
    for method in ("raw", "centred", "whitened", "adapted", "adapted-raw"):
        for metric in ("precision@1", "precision@3", "map@3"):
            got, want = result["overall"][method][metric], before[method][metric]
            assert got["mean"] == pytest.approx(want["mean"], abs=1e-9), (method, metric)


def test_evaluation_refuses_features_that_changed_since_indexing(old: Path) -> None:
    changed = old / "changed"
    shutil.copytree(old / "features", changed)
    np.save(changed / "features.npy", np.load(changed / "features.npy")[::-1].copy())
    manifest = json.loads((changed / "manifest.json").read_text())
    manifest["checksums"]["features.npy"] = sha256_file(changed / "features.npy")
    (changed / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="features changed since"):
        evaluate_indexes(
            old / "indexes" / "raw",
            old / "indexes" / "adapted",
            old / "r",
            features=changed,
            adapter=old / "adapter",
        )


def test_old_adapter_json_train_config_reads_with_todays_names(old: Path) -> None:
    """0.1 wrote batch_size = pairs per step and extract_batch_size = images per forward."""
    from dinosearch.adapt.config import TrainConfig

    stored = json.loads((old / "adapter" / "adapter.json").read_text())["train_config"]
    config = TrainConfig.from_dict(stored)
    assert config.pairs_per_step == stored["batch_size"] == 4
    assert config.batch_size == stored["extract_batch_size"] == 32
    assert TrainConfig.from_dict(config.to_dict()) == config  # today's names round-trip
