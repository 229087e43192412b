"""A frozen backbone with its preprocessing and fingerprint: what every backbone family builds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn

# "cls": the CLS token; "mean": the mean of the patch tokens (its cosine splits exactly over
# patches, see dinosearch/explain); "cls+mean": both, concatenated.
Pooling = Literal["cls", "cls+mean", "mean"]


class WeightsUnavailableError(FileNotFoundError):
    """Pretrained weights could not be found locally nor downloaded."""


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes a model input: resize the short side, centre-crop, normalise."""

    image_size: int  # side of the square crop fed to the model
    resize_size: int  # short side after resizing, before the crop
    interpolation: str  # "bicubic", "bilinear", …
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_config(
        cls, cfg: Mapping[str, Any], *, image_size: int, resize_size: int
    ) -> Preprocess:
        """Mean, std and interpolation from the weights' own data config (timm's or open_clip's)."""
        mean, std = (tuple(float(v) for v in cfg[key]) for key in ("mean", "std"))
        return cls(
            image_size=image_size,
            resize_size=resize_size,
            interpolation=str(cfg.get("interpolation", "bicubic")),
            mean=mean,  # type: ignore[arg-type]
            std=std,  # type: ignore[arg-type]
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Backbone(nn.Module):
    """A frozen feature extractor: (B, 3, S, S) normalised images → (B, embed_dim) float32 features."""

    def __init__(
        self,
        model: nn.Module,
        *,
        name: str,
        weights: str,
        preprocess: Preprocess,
        pooling: Pooling = "cls",
        random_init: bool = False,
        load_args: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.load_args = load_args or {}  # load_backbone(**load_args) rebuilds this backbone
        self.model = model.eval().requires_grad_(False)
        self.name = name
        self.weights = weights  # identity of the weights: "random(seed=0)", "sha256:…", "hf:…@…"
        self.preprocess = preprocess
        self.pooling: Pooling = pooling
        self.random_init = random_init
        width = int(getattr(model, "embed_dim", 0) or getattr(model, "output_dim", 0))
        self.embed_dim = width * (2 if pooling == "cls+mean" else 1)
        self.speedups: tuple[str, ...] = ()  # "fp16w", "compiled": they change the numbers
        self._compiled: Any = None

    @property
    def fingerprint(self) -> str:
        """What made these features: name, weights identity, input size, pooling (and any speed-up)."""
        base = f"{self.name}|{self.weights}|{self.preprocess.image_size}px|{self.pooling}"
        return "".join([base, *(f"|{s}" for s in self.speedups)])

    @property
    def input_dtype(self) -> torch.dtype:
        """The dtype of the weights, which the images are cast to: float32, or float16 with fp16 weights."""
        param = next(self.parameters(), None)
        return torch.float32 if param is None else param.dtype

    def accelerate(self, *, half: bool = False, compile: bool = False) -> Backbone:
        """fp16 weights and/or ``torch.compile`` (CUDA only); both change the features slightly, so
        the fingerprint records them ("|fp16w", "|compiled")."""
        if not (half or compile):
            return self
        device = next(self.parameters()).device
        if device.type != "cuda":
            flags = " and ".join(f for f, on in (("--half", half), ("--compile", compile)) if on)
            raise ValueError(
                f"{flags} needs a CUDA device, not {device}; drop {flags} on CPU "
                "(features made with it on CUDA are searched on CUDA too)"
            )
        if half and "fp16w" not in self.speedups:
            self.model.half()
            self.speedups += ("fp16w",)
        if compile and "compiled" not in self.speedups:
            self._compiled = torch.compile(self._embed, dynamic=False)
            self.speedups += ("compiled",)
        return self

    def train(self, mode: bool = True) -> Backbone:  # never leave eval mode: the backbone is frozen
        return super().train(False)

    @property
    def has_tokens(self) -> bool:
        """Whether the model gives patch tokens (timm ViTs do; OpenCLIP towers pool internally)."""
        return hasattr(self.model, "forward_features") and hasattr(self.model, "num_prefix_tokens")

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens before the patch grid: CLS, plus the registers of ``_reg`` models (1 + 4)."""
        return int(getattr(self.model, "num_prefix_tokens", 0))

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, cols) of the patch grid at this backbone's image size."""
        side, patch = self.preprocess.image_size, self.patch_size
        return side // patch, side // patch

    @property
    def patch_size(self) -> int:
        """Side of one patch in pixels (14 for DINOv2)."""
        self._require_tokens()
        model: Any = self.model
        return int(model.patch_embed.patch_size[0])

    def _require_tokens(self) -> None:
        if not self.has_tokens:
            raise ValueError(
                f"backbone {self.name!r} gives no patch tokens; use a DINOv2 backbone (dinov2_*)"
            )

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) → (B, prefix + N, width) final tokens (norm applied); N = rows × cols."""
        self._require_tokens()
        model: Any = self.model
        return model.forward_features(images.to(self.input_dtype))

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, prefix + N, width) tokens → (B, D) features as ``pooling`` says (registers never pooled)."""
        cls = tokens[:, 0]
        if self.pooling == "cls":
            return cls
        patch_mean = tokens[:, self.num_prefix_tokens :].mean(dim=1)
        return patch_mean if self.pooling == "mean" else torch.cat([cls, patch_mean], dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) → (B, D) float32."""
        images = images.to(self.input_dtype)
        return (self._compiled or self._embed)(images)

    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        if self.has_tokens:
            return self.pool(self.tokens(images)).float()
        model: Any = self.model
        return model.encode_image(images).float()  # OpenCLIP, or any model with encode_image

    def info(self) -> dict[str, Any]:
        """Everything a manifest needs to say how features were made."""
        return {
            "name": self.name,
            "weights": self.weights,
            "random_init": self.random_init,
            "fingerprint": self.fingerprint,
            "embed_dim": self.embed_dim,
            "pooling": self.pooling,
            "preprocess": self.preprocess.to_dict(),
            "load_args": self.load_args,
        }
