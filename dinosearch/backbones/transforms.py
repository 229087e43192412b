"""Evaluation preprocessing, as the backbone's weights expect it.

Two equal routes: ``eval_transform`` (PIL → normalised (3, S, S) float32, for queries and augmented
views) and the loader's split one: ``uint8_transform`` in a DataLoader worker (PIL → resized,
centre-cropped (C, S, S) uint8, C = 1 for grayscale) and ``Normalizer`` on the device (→ (B, 3, S, S)).
"""

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


def resize_crop(pre: Preprocess) -> list[v2.Transform]:
    """Resize the short side to ``resize_size`` (Pillow, antialiased), centre-crop ``image_size``."""
    mode = interpolation(pre.interpolation)
    return [
        v2.Resize(pre.resize_size, interpolation=mode, antialias=True),
        v2.CenterCrop(pre.image_size),
    ]


def eval_transform(pre: Preprocess) -> ImageTransform:
    """Resize the short side to ``resize_size``, centre-crop ``image_size``, normalise.

    Grayscale images become three identical channels. Output: (3, S, S) float32.
    """
    pipeline = v2.Compose([*resize_crop(pre), *to_model_input(pre)])

    def apply(img: Image.Image) -> torch.Tensor:
        return pipeline(img.convert("RGB"))

    return apply


def uint8_transform(pre: Preprocess) -> ImageTransform:
    """PIL "L" or "RGB" → resized, centre-cropped (C, S, S) uint8; C = 1 for "L", else 3.

    Resizing happens before any colour conversion (a third of the work for grayscale films), and
    Pillow resizes each channel alike, so ``Normalizer`` of this equals ``eval_transform`` exactly.
    """
    pipeline = v2.Compose([*resize_crop(pre), v2.PILToTensor()])

    def apply(img: Image.Image) -> torch.Tensor:
        return pipeline(img if img.mode in ("L", "RGB") else img.convert("RGB"))

    return apply


class Normalizer:
    """(B, C, S, S) uint8 with C = 1 or 3 → (B, 3, S, S) normalised ``dtype``, on the images' device.

    The operations of ``to_model_input`` in the same order (float32, / 255, - mean, / std), so the
    result equals ``eval_transform``'s bit for bit on CPU; then the cast to ``dtype``.
    """

    def __init__(self, pre: Preprocess, dtype: torch.dtype = torch.float32) -> None:
        self.pre = pre
        self.dtype = dtype
        self._stats: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8:  # already a float model input (augmented views)
            return images.to(self.dtype)
        mean, std = self._on(images.device)
        x = images.expand(-1, 3, -1, -1).to(torch.float32).mul_(1.0 / 255)  # (B, 3, S, S)
        return x.sub_(mean).div_(std).to(self.dtype)

    def _on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std (1, 3, 1, 1) on ``device``, copied there once (a copy would wait on the GPU)."""
        if device not in self._stats:
            mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (self.pre.mean, self.pre.std))
            self._stats[device] = (mean.to(device), std.to(device))
        return self._stats[device]
