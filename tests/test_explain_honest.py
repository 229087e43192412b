"""Honest maps: every map states how much of the score it accounts for, in the same words everywhere,
is coloured relative to the score, and the default pipeline's maps account for most of it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import TINY, build_mean_indexes, sample_films
from PIL import Image

from dinosearch.adapt.adapter import AdapterConfig, DomainAdapter
from dinosearch.backbones import load_backbone
from dinosearch.explain import Explainer, PairExplanation, PatchMap
from dinosearch.explain.draw import scale_of, side_by_side
from dinosearch.explain.words import EXPLAINS_LITTLE, describe, statement

SIZE = 112  # 8×8 patches


def adapter_for(explainer: Explainer, images: torch.Tensor) -> DomainAdapter:
    torch.manual_seed(0)
    adapter = DomainAdapter(AdapterConfig(in_dim=explainer.backbone.embed_dim, bottleneck=16))
    adapter.set_standardization(explainer.backbone.pool(explainer.tokens(images)))
    return adapter.eval()


def expected_completeness(m: PatchMap, side: str) -> float:
    missing = abs(m.score - m.shares(side).sum())  # type: ignore[arg-type]
    return float(np.clip(1 - missing / abs(m.score), 0, 1))


@pytest.mark.parametrize(
    ("pooling", "adapted"),
    [("mean", False), ("mean", True), ("cls+mean", False), ("cls+mean", True), ("cls", False)],
)
def test_completeness_is_computed_and_stated_for_each_method(pooling: str, adapted: bool) -> None:
    backbone = load_backbone(TINY, "random", image_size=SIZE, pooling=pooling)  # type: ignore[arg-type]
    raw = Explainer(backbone)
    images = raw.inputs(sample_films(4))
    explainer = Explainer(backbone, adapter_for(raw, images), cache=raw.cache) if adapted else raw
    m = explainer.explain_inputs(images[[0, 3]])
    for side in ("query", "result"):
        assert m.completeness(side) == pytest.approx(expected_completeness(m, side), abs=1e-9)
    assert m.completeness() == min(m.completeness("query"), m.completeness("result"))
    words = statement(m)
    percent = f"{m.completeness():.0%}"
    assert percent in words and ("explains little" in words) == (m.completeness() < EXPLAINS_LITTLE)
    if m.method == "decomposition" and pooling == "mean":
        assert m.completeness() == pytest.approx(1.0, abs=1e-9) and "accounts for 100%" in words
    if m.method == "token-ig" and pooling == "mean":  # the baseline (average film) scores little
        assert m.completeness() > 0.9, describe(m)


def flat_explanation(effect: float, score: float = 0.9) -> PairExplanation:
    """An input-ig map whose 8×8 effects are ±``effect`` and whose score is all in the rest."""
    signs = np.where(np.indices((8, 8)).sum(0) % 2 == 0, 1.0, -1.0)
    zeros = np.zeros((8, 8))
    m = PatchMap("input-ig", effect * signs, -effect * signs, zeros, zeros, score, score, score, 16)
    grey = Image.new("RGB", (SIZE, SIZE), (128, 128, 128))
    return PairExplanation(m, grey, grey, 14, None, None, 0.01)


def test_a_map_of_almost_nothing_is_drawn_pale_and_says_explains_little() -> None:
    tiny = flat_explanation(1e-10)
    assert tiny.map.completeness() < 1e-6
    assert "explains little of this score" in statement(tiny.map) and "don't read it" in (
        statement(tiny.map)
    )
    assert scale_of(tiny) == pytest.approx(0.9 / 64)  # relative to the score, not to the map's max
    pixels = np.asarray(side_by_side(tiny), dtype=float)
    film = pixels[:, :320]  # the query panel; grey 128 where nothing is drawn
    assert np.abs(film - 128).max() <= 2, "a ±1e-10 map must look pale, not saturated"
    strong = np.asarray(side_by_side(flat_explanation(0.9 / 64)), dtype=float)[:, :320]
    assert np.abs(strong - 128).max() > 40  # an effect of a whole even share is drawn in colour
    assert tiny.to_json()["statement"] == statement(tiny.map)
    assert tiny.to_json()["completeness"] == pytest.approx(tiny.map.completeness())


def test_the_apps_default_for_cls_is_integrated_gradients_with_more_than_one_step() -> None:
    from dinosearch.app.why import WhySimilar

    backbone = load_backbone(TINY, "random", image_size=SIZE)  # CLS pooling: input-ig
    searcher = SimpleNamespace(backbone=backbone, adapter=None, fingerprint=backbone.fingerprint)
    why = WhySimilar(SimpleNamespace(raw=searcher, adapted=searcher))  # type: ignore[arg-type]
    query, result = sample_films(2)
    with Image.open(query) as q:
        view = why.view("raw", q.convert("RGB"), str(result))
    m = view.explanation.map
    assert m.method == "input-ig" and m.steps > 1
    assert f"({m.steps} steps)" in view.caption and statement(m) in view.caption
    assert "Σ patch shares" in view.caption and "up to a gap" not in view.caption


@pytest.fixture(scope="module")
def mean_indexes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """indexes/m-raw and indexes/m-adapted (untrained adapter) of 12 real films, mean pooling."""
    backbone = load_backbone(TINY, "random", image_size=SIZE, pooling="mean")
    return build_mean_indexes(backbone, tmp_path_factory.mktemp("honest"))


def numbers(line: str) -> dict[str, float]:
    """'query: Σ patch shares +0.1 + rest +0.2 + gap +0.0 = score 0.3; …' → its four numbers."""
    pattern = r"shares ([-+.\d]+) \+ rest ([-+.\d]+) \+ gap ([-+.\d]+) = score ([-+.\d]+)"
    found = re.search(pattern, line)
    assert found, line
    return dict(zip(("sum", "rest", "gap", "score"), map(float, found.groups()), strict=True))


@pytest.mark.parametrize("index", ["m-raw", "m-adapted"])
def test_cli_text_json_and_picture_state_the_same_sums(
    mean_indexes: Path, index: str, tmp_path: Path, capsys
) -> None:
    from dinosearch.cli import main

    query, result = sample_films(12)[0], sample_films(12)[5]
    argv = ["explain", "--index", str(mean_indexes / index), "--image", str(query)]
    argv += ["--result", result.stem]
    assert main([*argv, "--out", str(tmp_path / "map.png")]) == 0
    text = capsys.readouterr().out.splitlines()
    with Image.open(tmp_path / "map.png") as png:
        picture = png.text["Description"].splitlines()
    assert text[1:] == picture[1 : len(text)]  # the PNG's title, then the CLI's very lines
    assert re.match(r"This map (accounts for|explains little)", text[1])
    assert main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert text[1] == out["statement"]
    for side, line in zip(("query", "result"), text[3:5], strict=True):
        got = numbers(line)
        assert line.startswith(f"{side}:")
        assert got["sum"] + got["rest"] + got["gap"] == pytest.approx(got["score"], abs=3e-4)
        assert got["sum"] == pytest.approx(out[side]["sum"], abs=1e-4)
        assert got["rest"] == pytest.approx(out[side]["rest"], abs=1e-4)
        assert got["score"] == pytest.approx(out["score"], abs=1e-4)
        assert np.sum(out[side]["contributions"]) + out[side]["rest"] + out[side]["gap"] == (
            pytest.approx(out["score"], abs=1e-6)
        )
    assert out["completeness"] >= 0.9  # the default pipeline's (mean pooling) maps


def test_demo_pools_the_mean_so_its_maps_account_for_the_score() -> None:
    from dinosearch.cli import build_parser
    from dinosearch.demo import DemoConfig

    args = build_parser().parse_args(["demo"])
    assert args.pooling == DemoConfig().pooling == "mean"  # one place: DemoConfig's default
    assert build_parser().parse_args(["embed", "--images", "x", "--out", "y"]).pooling == "cls"
