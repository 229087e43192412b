"""Why-similar maps (dinosearch.explain): exact sums, gradient identities, faithfulness, CLI and app."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import TINY, build_mean_indexes, sample_films
from PIL import Image

from dinosearch.adapt.adapter import AdapterConfig, DomainAdapter
from dinosearch.backbones import load_backbone
from dinosearch.explain import Explainer, TokenCache
from dinosearch.explain.faithfulness import mask_patches, masking_trial, summarise

EXACT = 1e-9  # |score − rest − Σ shares| of the decomposition: float64 rounding only
SIZE = 112  # 8×8 patches: fine enough to mask a quarter


@pytest.fixture(scope="module")
def mean_backbone():
    return load_backbone(TINY, "random", image_size=SIZE, pooling="mean")


def fitted_adapter(explainer: Explainer, images: torch.Tensor) -> DomainAdapter:
    """An untrained adapter whose standardisation is fitted to ``images``' features."""
    torch.manual_seed(0)
    adapter = DomainAdapter(AdapterConfig(in_dim=explainer.backbone.embed_dim, bottleneck=16))
    adapter.set_standardization(explainer.backbone.pool(explainer.tokens(images)))
    return adapter.eval()


@pytest.mark.parametrize("pooling", ["mean", "cls+mean"])
def test_decomposition_sums_exactly_to_the_vectors_cosine(pooling: str) -> None:
    backbone = load_backbone(TINY, "random", image_size=SIZE, pooling=pooling)  # type: ignore[arg-type]
    explainer = Explainer(backbone)
    images = explainer.inputs(sample_films(2))
    m = explainer.explain_inputs(images)
    assert m.method == "decomposition" and m.exact and m.grid == (8, 8)
    for side in ("query", "result"):
        assert abs(m.gap(side)) < EXACT  # Σ shares + rest = score
    q, r = explainer.vectors(images)
    assert m.score == pytest.approx(float(q @ r), abs=1e-6)
    if pooling == "mean":  # the drawn effects are the shares minus score × own share: Σ = 0
        assert abs(m.query.sum()) < EXACT and m.query_base.sum() == pytest.approx(
            m.score, abs=EXACT
        )


def test_decomposition_effects_are_gradient_times_input_on_the_tokens(mean_backbone) -> None:
    explainer = Explainer(mean_backbone)
    images = explainer.inputs(sample_films(2))
    tokens = explainer.tokens(images)[:, 1:].double().requires_grad_(True)  # (2, N, W)
    pooled = F.normalize(tokens.mean(1), dim=-1)
    (grad,) = torch.autograd.grad(pooled[0] @ pooled[1], tokens)
    expected = (grad * tokens).sum(-1).detach().numpy().reshape(2, 8, 8)
    m = explainer.explain_inputs(images)
    np.testing.assert_allclose(m.query, expected[0], atol=1e-12)
    np.testing.assert_allclose(m.result, expected[1], atol=1e-12)


def test_token_ig_through_the_adapter_has_a_small_measured_gap(mean_backbone) -> None:
    raw = Explainer(mean_backbone)
    images = raw.inputs(sample_films(8))
    adapted = Explainer(mean_backbone, fitted_adapter(raw, images), cache=raw.cache)
    for i in range(0, 8, 2):
        m = adapted.explain_inputs(images[i : i + 2])
        assert m.method == "token-ig" and not m.exact and m.steps == 16
        assert max(abs(m.gap("query")), abs(m.gap("result"))) < 5e-3
        q, r = adapted.vectors(images[i : i + 2])
        assert m.score == pytest.approx(float(q @ r), abs=1e-5)


def test_input_ig_one_step_is_gradient_times_input_summed_per_patch(tiny_backbone) -> None:
    explainer = Explainer(tiny_backbone)  # CLS pooling: input-ig is the only method
    images = explainer.inputs(sample_films(2))
    m = explainer.explain_inputs(images, steps=1)
    assert m.method == "input-ig" and m.steps == 1 and m.grid == (4, 4)
    x = images.clone().requires_grad_(True)
    v = F.normalize(tiny_backbone(x), dim=-1)
    base = images.mean(dim=(2, 3), keepdim=True)
    (gq,) = torch.autograd.grad(v[0] @ v[1].detach(), x)  # result held fixed
    per_pixel = ((images - base) * gq)[0].sum(0)  # (56, 56)
    expected = per_pixel.reshape(4, 14, 4, 14).sum((1, 3)).double().numpy()
    np.testing.assert_allclose(m.query, expected, rtol=1e-4, atol=1e-7)


def test_cls_pooling_has_no_decomposition_and_says_what_to_do(tiny_backbone) -> None:
    explainer = Explainer(tiny_backbone)
    assert explainer.resolve("auto") == "input-ig"
    with pytest.raises(ValueError, match="input-ig.*--pooling mean"):
        explainer.resolve("decomposition")
    with pytest.raises(ValueError, match="token-ig or input-ig"):
        Explainer(load_backbone(TINY, "random", pooling="mean", image_size=56), DomainAdapter(
            AdapterConfig(in_dim=32, bottleneck=4))).resolve("decomposition")  # fmt: skip


def test_mean_pooling_is_fingerprinted_and_cls_stays_the_default(tiny_backbone) -> None:
    mean = load_backbone(TINY, "random", image_size=56, pooling="mean")
    assert mean.fingerprint == f"{TINY}|random(seed=0)|56px|mean" and mean.embed_dim == 32
    assert tiny_backbone.fingerprint.endswith("|56px|cls")
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        tokens = tiny_backbone.tokens(x)
        assert torch.equal(tiny_backbone(x), tokens[:, 0])
        assert torch.equal(mean(x), tokens[:, 1:].mean(1))  # same weights (seed 0)


def test_register_tokens_are_not_in_the_patch_grid() -> None:
    reg = load_backbone("dinov2_vits14_reg", "random", image_size=56, pooling="mean")
    assert reg.num_prefix_tokens == 5 and reg.grid == (4, 4)  # CLS + 4 registers, then 16 patches
    explainer = Explainer(reg)
    images = explainer.inputs(sample_films(2))
    tokens = explainer.tokens(images)
    assert tokens.shape[1] == 5 + 16
    torch.testing.assert_close(reg.pool(tokens), tokens[:, 5:].mean(1))
    m = explainer.explain_inputs(images)
    assert m.query.shape == (4, 4) and abs(m.gap("query")) < EXACT


def test_mask_patches_flattens_exactly_the_chosen_patches() -> None:
    images = torch.arange(2 * 3 * 28 * 28, dtype=torch.float32).reshape(2, 3, 28, 28)
    masked = mask_patches(images, np.array([[0], [3]]), 14)
    means = images.mean(dim=(2, 3))
    assert torch.all(masked[0, :, :14, :14] == means[0][:, None, None])
    assert torch.all(masked[1, :, 14:, 14:] == means[1][:, None, None])
    assert torch.equal(masked[0, :, 14:], images[0, :, 14:]) and torch.equal(
        masked[1, :, :14], images[1, :, :14]
    )


def test_masking_the_top_quarter_beats_a_random_quarter(mean_backbone, tiny_backbone) -> None:
    """Nearest-neighbour pairs of 24 real films: each method passes in ≥ 80 % of the 12 pairs."""
    paths = sample_films(24)
    raw = Explainer(mean_backbone, cache=TokenCache(64))
    images = raw.inputs(paths)
    adapted = Explainer(mean_backbone, fitted_adapter(raw, images), cache=raw.cache)
    cls = Explainer(load_backbone(TINY, "random", image_size=SIZE), cache=TokenCache(64))
    for explainer in (raw, adapted, cls):
        v = explainer.vectors(images, cached=True).numpy()
        scores = v[:12] @ v.T
        np.fill_diagonal(scores, -np.inf)
        rng = np.random.default_rng(0)
        trials = []
        for i, j in enumerate(scores.argmax(1)):
            pair = images[[i, int(j)]]
            # CLS: plain gradient × input (1 step); the 16-step default passes only 5/12 pairs with
            # both films masked (each film alone 12/12): docs/explain.md
            steps = 1 if explainer.resolve() == "input-ig" else None
            patch_map = explainer.explain_inputs(pair, steps=steps)
            trials.append(masking_trial(explainer, pair, patch_map, rng=rng))
        summary = summarise(trials)
        assert summary["top_beats_random"] >= 0.8, (explainer.resolve(), summary)
        assert summary["mean_drop_top"] > summary["mean_drop_random"]


@pytest.fixture(scope="module")
def mean_indexes(tmp_path_factory: pytest.TempPathFactory, mean_backbone) -> Path:
    """indexes/m-raw and indexes/m-adapted (untrained adapter) of 12 real films, mean pooling."""
    return build_mean_indexes(mean_backbone, tmp_path_factory.mktemp("explain"))


def test_cli_writes_the_map_and_json_that_sums(mean_indexes: Path, tmp_path: Path, capsys) -> None:
    from dinosearch.cli import main

    query, result = sample_films(12)[0], sample_films(12)[5]
    argv = ["explain", "--index", str(mean_indexes / "m-raw"), "--image", str(query)]
    code = main([*argv, "--result", result.stem, "--out", str(tmp_path / "map.png"), "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["method"] == "decomposition" and out["sums_to_score"] is True
    assert out["grid"] == [8, 8] and np.shape(out["query"]["contributions"]) == (8, 8)
    total = np.sum(out["result"]["contributions"]) + out["result"]["rest"]
    assert total == pytest.approx(out["score"], abs=1e-6) and out["result"]["id"] == result.stem
    with Image.open(tmp_path / "map.png") as png:
        assert png.width > 600 and png.height > 300
    assert main([*argv, "--result", "nope", "--json"]) == 2
    assert "'nope' is not an id" in capsys.readouterr().err


def test_app_explains_a_result_on_demand(
    mean_indexes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("DINOSEARCH_INDEXES", str(mean_indexes))
    app = Path(__file__).resolve().parents[1] / "dinosearch" / "app" / "page.py"
    at = AppTest.from_file(str(app), default_timeout=90).run()
    at.radio[0].set_value("Pick from the collection").run()
    assert not any("Score" in c.value for c in at.caption)  # nothing explained until asked
    for column in ("raw", "adapted"):
        box = at.selectbox(key=f"why-pick-{column}")
        box.set_value(box.options[1])
    at.toggle(key="why-matches-raw").set_value(True).run()
    assert not at.exception and not at.error
    captions = [c.value for c in at.caption]
    assert any("exact decomposition" in c and "Computed in" in c for c in captions)
    assert any("integrated gradients" in c and "This map accounts for" in c for c in captions)
    assert sum("Red: the patch makes the two films more alike" in c for c in captions) == 2
