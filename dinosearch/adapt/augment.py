"""Training augmentations as named presets: PIL image → random view as a normalised (3, S, S) tensor.

Every random draw comes from torch's global generator, so ``features.iter_features(..., seed=...)``
makes each item's views repeat exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from dinosearch.backbones import Preprocess
from dinosearch.backbones.transforms import interpolation, to_model_input


class RandomGamma(v2.Transform):
    """Gamma correction ``x ** gamma`` with gamma drawn log-uniformly from ``gamma`` (float images)."""

    def __init__(self, gamma: tuple[float, float] = (0.7, 1.4)) -> None:
        super().__init__()
        self.log_lo, self.log_hi = torch.tensor(gamma).log().tolist()

    def make_params(self, flat_inputs: list) -> dict:  # type: ignore[type-arg]
        u = float(torch.rand(()))
        return {"gamma": float(torch.tensor(self.log_lo + u * (self.log_hi - self.log_lo)).exp())}

    def transform(self, inpt, params):  # type: ignore[no-untyped-def]
        return TF.adjust_gamma(inpt, params["gamma"])


class RandomNoise(v2.Transform):
    """Gaussian noise, σ drawn from ``sigma``, the same in every channel (a gray film stays gray)."""

    def __init__(self, sigma: tuple[float, float] = (0.005, 0.03)) -> None:
        super().__init__()
        self.sigma = sigma

    def make_params(self, flat_inputs: list) -> dict:  # type: ignore[type-arg]
        lo, hi = self.sigma
        return {"sigma": lo + float(torch.rand(())) * (hi - lo)}

    def transform(self, inpt, params):  # type: ignore[no-untyped-def]
        noise = torch.randn_like(inpt[..., :1, :, :]) * params["sigma"]  # one for all channels
        return (inpt + noise).clamp_(0.0, 1.0)


class Augment:
    """PIL image → random view: crop (PIL) → float [0, 1] (3, S, S) → tensor ops → normalise.

    Everything after the crop runs on the small float tensor (blurring a full-size PIL image is ~8×
    slower). A class rather than a closure so DataLoader workers can pickle it.
    """

    def __init__(self, pre: Preprocess, crop: v2.Transform, on_tensor: list[v2.Transform]) -> None:
        *to_float, normalize = to_model_input(pre)
        self.pipeline = v2.Compose([crop, *to_float, *on_tensor, normalize])

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return self.pipeline(img.convert("RGB"))  # grayscale → 3 identical channels


def xray(pre: Preprocess, *, hflip: bool = False) -> Augment:
    """Radiograph views: what changes between two films of one chest, and nothing that never does.

    - random resized crop, scale 0.5-1: patient positioning and collimation vary, but the lungs must stay
      in view (SimCLR's 0.08 would often crop them away);
    - rotation up to ±10°: patients are rarely perfectly square to the detector;
    - brightness/contrast ±30% and gamma 0.7-1.4: exposure, detector and windowing differ between sites;
    - mild Gaussian blur and noise: resolution and quantum noise differ between machines;
    - no hue, saturation or random grayscale: radiographs have no colour, so these teach nothing;
    - no horizontal flip unless ``hflip``: laterality matters (heart on the left, situs inversus,
      left- vs right-sided findings), so a flipped chest is a different chest.
    """
    s, interp = pre.image_size, interpolation(pre.interpolation)
    crop = v2.RandomResizedCrop(
        s, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3), interpolation=interp, antialias=True
    )
    on_tensor = [
        v2.RandomApply([v2.RandomRotation(10, interpolation=v2.InterpolationMode.BILINEAR)], p=0.5),
        *([v2.RandomHorizontalFlip()] if hflip else []),
        v2.RandomApply([v2.ColorJitter(brightness=0.3, contrast=0.3)], p=0.8),
        v2.RandomApply([RandomGamma((0.7, 1.4))], p=0.5),
        v2.RandomApply([v2.GaussianBlur(9, sigma=(0.1, 1.5))], p=0.3),
        v2.RandomApply([RandomNoise((0.005, 0.03))], p=0.3),
    ]
    return Augment(pre, crop, on_tensor)


def natural(pre: Preprocess, *, hflip: bool = True) -> Augment:
    """The reference design's colour recipe for everyday photographs (SimCLR / DINO style).

    Random resized crop (scale 0.25-1), horizontal flip, strong colour jitter (brightness, contrast,
    saturation, hue) with p=0.8, random grayscale p=0.2 and Gaussian blur p=0.5: colour and left/right
    rarely define what a photographed object is, so the embedding should ignore them.
    """
    s, interp = pre.image_size, interpolation(pre.interpolation)
    crop = v2.RandomResizedCrop(s, scale=(0.25, 1.0), interpolation=interp, antialias=True)
    on_tensor = [
        *([v2.RandomHorizontalFlip()] if hflip else []),
        v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
        v2.RandomGrayscale(p=0.2),
        v2.RandomApply([v2.GaussianBlur(23, sigma=(0.1, 2.0))], p=0.5),
    ]
    return Augment(pre, crop, on_tensor)


PRESETS: dict[str, Callable[..., Augment]] = {"xray": xray, "natural": natural}


def build_augment(preset: str, pre: Preprocess, *, hflip: bool | None = None) -> Augment:
    """The named preset's random view transform; ``hflip`` None keeps the preset's own default."""
    if preset not in PRESETS:
        raise ValueError(f"unknown augmentation preset {preset!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[preset](pre) if hflip is None else PRESETS[preset](pre, hflip=hflip)
