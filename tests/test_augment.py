"""Augmentation presets: shapes, no colour or flip in xray, repeatability under a seed."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from dinosearch.adapt.augment import build_augment


def _ops(augment: object) -> list[v2.Transform]:
    """Every transform in the pipeline, RandomApply contents included."""
    out, todo = [], list(augment.pipeline.transforms)  # type: ignore[attr-defined]
    while todo:
        t = todo.pop()
        out.append(t)
        todo.extend(getattr(t, "transforms", []))
    return out


@pytest.fixture(scope="module")
def gray() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (80, 70), dtype=np.uint8), mode="L")


@pytest.mark.parametrize("preset", ["xray", "natural"])
def test_output_shape_and_dtype(tiny_backbone, gray, preset: str) -> None:
    x = build_augment(preset, tiny_backbone.preprocess)(gray)
    assert x.shape == (3, 56, 56) and x.dtype == torch.float32 and torch.isfinite(x).all()


def test_xray_has_no_colour_ops_and_no_flip_by_default(tiny_backbone) -> None:
    ops = _ops(build_augment("xray", tiny_backbone.preprocess))
    jitters = [t for t in ops if isinstance(t, v2.ColorJitter)]
    assert jitters and all(t.hue is None and t.saturation is None for t in jitters)
    assert not any(isinstance(t, (v2.RandomGrayscale, v2.Grayscale)) for t in ops)
    assert not any(isinstance(t, v2.RandomHorizontalFlip) for t in ops)
    flipped = _ops(build_augment("xray", tiny_backbone.preprocess, hflip=True))
    assert any(isinstance(t, v2.RandomHorizontalFlip) for t in flipped)


def test_natural_has_the_colour_recipe(tiny_backbone) -> None:
    ops = _ops(build_augment("natural", tiny_backbone.preprocess))
    assert any(isinstance(t, v2.ColorJitter) and t.hue is not None for t in ops)
    assert any(isinstance(t, v2.RandomGrayscale) for t in ops)
    assert any(isinstance(t, v2.RandomHorizontalFlip) for t in ops)


def test_xray_keeps_a_grayscale_film_gray(tiny_backbone, gray) -> None:
    pre = tiny_backbone.preprocess
    aug = build_augment("xray", pre)
    mean, std = torch.tensor(pre.mean)[:, None, None], torch.tensor(pre.std)[:, None, None]
    for seed in range(5):
        torch.manual_seed(seed)
        x = aug(gray) * std + mean  # back to [0, 1]
        assert torch.allclose(x[0], x[1], atol=1e-5) and torch.allclose(x[0], x[2], atol=1e-5)


@pytest.mark.parametrize("preset", ["xray", "natural"])
def test_same_seed_same_view(tiny_backbone, gray, preset: str) -> None:
    aug = build_augment(preset, tiny_backbone.preprocess)
    views = []
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        views.append(aug(gray))
    assert torch.equal(views[0], views[1]) and not torch.equal(views[0], views[2])


def test_picklable_for_workers_and_unknown_preset(tiny_backbone) -> None:
    pickle.dumps(build_augment("xray", tiny_backbone.preprocess))
    with pytest.raises(ValueError, match="unknown augmentation preset 'ct'"):
        build_augment("ct", tiny_backbone.preprocess)
