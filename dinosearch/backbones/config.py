"""Settings shared by every job that runs a backbone: which backbone, and how it runs.

Job configs inherit these (``class EmbedConfig(BackboneSettings, RuntimeSettings)``), so the flags
``--backbone``, ``--weights``, ``--seed``, ``--batch-size``, ``--workers``… are written once.
Standard library only: ``--help`` never waits for torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from dinosearch.core.config import opt

Pooling = Literal["cls", "cls+mean", "mean"]


@dataclass(frozen=True)
class BackboneSettings:
    """Which frozen backbone makes the features (``load_backbone``'s arguments)."""

    backbone: str = opt(
        "backbone name (see `dinosearch backbones`)", default="dinov2_vits14", group="backbone"
    )
    weights: str = opt(
        "'pretrained' (Hugging Face hub / local cache), 'random' (seeded, untrained) or a file path",
        default="pretrained",
        group="backbone",
    )
    image_size: int = opt("crop side in pixels, multiple of 14", default=224, group="backbone")
    pooling: Pooling = opt(
        "CLS token, CLS concatenated with the mean of patch tokens, or that mean alone "
        "(whose similarity splits exactly over patches: `dinosearch explain`)",
        default="cls",
        group="backbone",
    )
    seed: int = opt("seed for random weights and augmentations", default=0, group="backbone")
    half: bool = opt(
        "fp16 weights (CUDA only; features differ slightly and the fingerprint says |fp16w)",
        default=False,
        group="backbone",
    )
    compile: bool = opt(
        "torch.compile the backbone (CUDA only; a minute to compile; fingerprint |compiled)",
        default=False,
        group="backbone",
    )

    def __post_init__(self) -> None:
        if self.image_size < 14 or self.image_size % 14:
            raise ValueError(
                f"--image-size {self.image_size}: must be a positive multiple of 14 (e.g. 224)"
            )


@dataclass(frozen=True)
class RuntimeSettings:
    """Where and how fast the backbone runs; none of these change the features' meaning."""

    device: str = opt("auto, cpu, cuda or cuda:N", default="auto", group="runtime")
    batch_size: int | None = opt(
        "images per backbone forward (default: 32 on CPU, up to 512 on CUDA)",
        default=None,
        group="runtime",
    )
    num_workers: int | None = opt(
        "DataLoader workers (default: by device)", default=None, flag="--workers", group="runtime"
    )
    progress: bool = opt(
        "hide progress bars", default=True, negate="--no-progress", group="runtime"
    )

    def __post_init__(self) -> None:
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"--batch-size {self.batch_size}: must be ≥ 1 (or leave it out)")
        if self.num_workers is not None and self.num_workers < 0:
            raise ValueError(f"--workers {self.num_workers}: must be ≥ 0 (or leave it out)")


def backbone_arguments(config: Any) -> dict[str, Any]:
    """``load_backbone``'s keyword arguments from a config that has the backbone settings
    (the device still to resolve: ``core.runtime.resolve_device``)."""
    return {
        "name": config.backbone,
        "weights": config.weights,
        "image_size": config.image_size,
        "pooling": config.pooling,
        "seed": config.seed,
        "half": config.half,
        "compile": config.compile,
    }
