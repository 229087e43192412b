"""Evaluation preprocessing: PIL image → normalised (3, S, S) float tensor, as the backbone's weights expect."""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode, v2

from dinosearch.backbones.backbone import Preprocess

ImageTransform = Callable[[Image.Image], torch.Tensor]


def interpolation(name: str) -> InterpolationMode:
    """torchvision's enum for a timm interpolation name ("bicubic", "bilinear", …)."""
    try:
        return InterpolationMode(name)
    except ValueError as e:
        raise ValueError(f"unknown interpolation {name!r}; use bicubic or bilinear") from e


def to_model_input(pre: Preprocess) -> list[v2.Transform]:
    """The tail shared by every pipeline: RGB PIL → float tensor in [0, 1] → normalised."""
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(pre.mean, pre.std)]


def eval_transform(pre: Preprocess) -> ImageTransform:
    """Resize the short side to ``resize_size``, centre-crop ``image_size``, normalise.

    Grayscale images become three identical channels. Output: (3, S, S) float32.
    """
    pipeline = v2.Compose(
        [
            v2.Resize(
                pre.resize_size, interpolation=interpolation(pre.interpolation), antialias=True
            ),
            v2.CenterCrop(pre.image_size),
            *to_model_input(pre),
        ]
    )

    def apply(img: Image.Image) -> torch.Tensor:
        return pipeline(img.convert("RGB"))

    return apply
