"""Load a named DINOv2 (or OpenCLIP) backbone, frozen and in eval mode, with its preprocessing and fingerprint.

Weights come from the Hugging Face hub through timm's names (honouring the local cache and
``HF_HUB_OFFLINE``), from a local file (official Meta ``dinov2_vit*14*_pretrain.pth`` or timm
``.safetensors``), or from a seeded random initialisation for offline pipelines and tests.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, cast

import torch
from torch import nn

from dinosearch.core.storage import sha256_file

Pooling = Literal["cls", "cls+mean"]


@dataclass(frozen=True)
class BackboneSpec:
    """A known backbone: its timm architecture and the hub repo of its pretrained weights."""

    timm_arch: str
    hub_repo: str | None
    overrides: tuple[tuple[str, Any], ...] = ()  # timm kwargs that shrink the test model


def _dinov2(arch: str) -> BackboneSpec:
    return BackboneSpec(arch, f"timm/{arch}.lvd142m")


BACKBONES: dict[str, BackboneSpec] = {
    "dinov2_vits14": _dinov2("vit_small_patch14_dinov2"),
    "dinov2_vitb14": _dinov2("vit_base_patch14_dinov2"),
    "dinov2_vitl14": _dinov2("vit_large_patch14_dinov2"),
    "dinov2_vitg14": _dinov2("vit_giant_patch14_dinov2"),
    "dinov2_vits14_reg": _dinov2("vit_small_patch14_reg4_dinov2"),
    "dinov2_vitb14_reg": _dinov2("vit_base_patch14_reg4_dinov2"),
    "dinov2_vitl14_reg": _dinov2("vit_large_patch14_reg4_dinov2"),
    "dinov2_vitg14_reg": _dinov2("vit_giant_patch14_reg4_dinov2"),
    # The DINOv2 ViT architecture shrunk to 2 blocks of width 32: for tests and offline pipelines.
    # LayerScale starts at 1 instead of DINOv2's 1e-5: with random weights the residual branches
    # would otherwise vanish and every image map to one vector (cosine > 0.9999999), so no test
    # could tell a right ranking from a wrong one.
    "dinov2_tiny_test": BackboneSpec(
        "vit_small_patch14_dinov2",
        None,
        (("embed_dim", 32), ("depth", 2), ("num_heads", 2), ("img_size", 56), ("init_values", 1.0)),
    ),
}


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

    @property
    def fingerprint(self) -> str:
        """What made these features: name, weights identity, input size and pooling."""
        return f"{self.name}|{self.weights}|{self.preprocess.image_size}px|{self.pooling}"

    def train(self, mode: bool = True) -> Backbone:  # never leave eval mode: the backbone is frozen
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) → (B, D) float32."""
        model: Any = self.model
        if hasattr(model, "forward_features") and hasattr(model, "num_prefix_tokens"):
            tokens = model.forward_features(images)  # (B, prefix + N, width), final norm applied
            cls = tokens[:, 0]
            if self.pooling == "cls+mean":
                patch_mean = tokens[:, model.num_prefix_tokens :].mean(dim=1)
                cls = torch.cat([cls, patch_mean], dim=1)
            return cls.float()
        return model.encode_image(images).float()  # OpenCLIP

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


def list_backbones() -> list[str]:
    """Known backbone names (OpenCLIP models are named ``openclip:<model>``)."""
    return sorted(BACKBONES)


def load_backbone(
    name: str,
    weights: str = "pretrained",
    *,
    image_size: int = 224,
    pooling: Pooling = "cls",
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> Backbone:
    """Build ``name`` with ``weights`` ("pretrained", "random" or a local file path).

    Raises:
        ValueError: unknown name, bad image size, or a weights file of another architecture.
        WeightsUnavailableError: pretrained weights neither cached nor downloadable.
    """
    if name.startswith("openclip:"):
        from dinosearch.backbones.openclip import load_openclip

        return load_openclip(name, weights, image_size=image_size, seed=seed, device=device)
    if name not in BACKBONES:
        raise ValueError(
            f"unknown backbone {name!r}; known: {', '.join(list_backbones())} or openclip:<model>"
        )
    if image_size % 14:
        raise ValueError(
            f"--image-size {image_size} must be a multiple of the patch size 14 (e.g. 224)"
        )
    if pooling not in ("cls", "cls+mean"):
        raise ValueError(f"pooling {pooling!r} must be 'cls' or 'cls+mean'")
    spec = BACKBONES[name]
    path = (
        None
        if weights == "random"
        else _hub_file(name, spec)
        if weights == "pretrained"
        else Path(weights)
    )
    model = _build(spec, seed)  # after the weights are found: fail fast when they are not
    if path is None:
        identity, random_init = f"random(seed={seed})", True
    else:
        identity = _load_weights(model, path, name)
        if weights == "pretrained":
            identity = _hub_identity(spec, path)
        random_init = False
    preprocess = _preprocess(model, image_size)
    backbone = Backbone(
        model,
        name=name,
        weights=identity,
        preprocess=preprocess,
        pooling=pooling,
        random_init=random_init,
        load_args={
            "name": name,
            "weights": weights
            if weights in ("pretrained", "random")
            else str(Path(weights).resolve()),
            "image_size": image_size,
            "pooling": pooling,
            "seed": seed,
        },
    )
    return backbone.to(device)


def backbone_from_info(info: dict[str, Any], *, device: str | torch.device = "cpu") -> Backbone:
    """Rebuild the backbone a manifest describes (its ``backbone`` entry); refuse if it comes out different."""
    args = info.get("load_args")
    if not args:
        raise ValueError(
            f"manifest backbone entry {info.get('fingerprint')!r} has no load_args; re-embed"
        )
    backbone = load_backbone(**args, device=device)
    if backbone.fingerprint != info["fingerprint"]:
        raise ValueError(
            f"backbone rebuilt as {backbone.fingerprint!r} but the manifest says {info['fingerprint']!r}; "
            "the weights file changed since the features were made: re-embed or restore the weights"
        )
    return backbone


def _build(spec: BackboneSpec, seed: int) -> nn.Module:
    import timm

    torch.manual_seed(seed)  # timm's init draws from the global generator
    return timm.create_model(
        spec.timm_arch,
        pretrained=False,
        num_classes=0,
        dynamic_img_size=True,
        **dict(spec.overrides),
    )


def _preprocess(model: nn.Module, image_size: int) -> Preprocess:
    """Mean, std and interpolation from the weights' own config; resize 256 → crop 224 by default."""
    import timm.data

    cfg = timm.data.resolve_model_data_config(model)
    return Preprocess(
        image_size=image_size,
        resize_size=round(image_size / 0.875),  # the common retrieval recipe: 256 → 224
        interpolation=str(cfg.get("interpolation", "bicubic")),
        mean=tuple(float(m) for m in cfg["mean"]),  # type: ignore[arg-type]
        std=tuple(float(s) for s in cfg["std"]),  # type: ignore[arg-type]
    )


def _hub_file(name: str, spec: BackboneSpec) -> Path:
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache

    if spec.hub_repo is None:
        raise ValueError(f"{name} has no pretrained weights; use --weights random")
    cached = try_to_load_from_cache(spec.hub_repo, "model.safetensors")
    if isinstance(cached, str):
        return Path(cached)
    ways_out = (
        f"Ways out: download it elsewhere and pass --weights PATH (a timm .safetensors file or Meta's "
        f"{name}_pretrain.pth), or use --weights random for an untrained backbone."
    )
    where = f"searched the Hugging Face cache at {constants.HF_HUB_CACHE}"
    if constants.HF_HUB_OFFLINE:
        raise WeightsUnavailableError(
            f"pretrained weights for {name} ({spec.hub_repo}) are not cached and HF_HUB_OFFLINE is set; "
            f"{where}. {ways_out}"
        )
    if not _reachable(constants.ENDPOINT):
        raise WeightsUnavailableError(
            f"pretrained weights for {name} ({spec.hub_repo}) are not cached and {constants.ENDPOINT} "
            f"cannot be reached; {where}. {ways_out}"
        )
    try:
        return Path(hf_hub_download(spec.hub_repo, "model.safetensors", etag_timeout=5))
    except Exception as e:
        raise WeightsUnavailableError(
            f"pretrained weights for {name} ({spec.hub_repo}) could not be downloaded "
            f"({type(e).__name__}) and are not cached; {where}. {ways_out}"
        ) from e


def _reachable(url: str, timeout: float = 3.0) -> bool:
    """Fail fast when the hub's host does not resolve or answer (huggingface_hub retries for ~30 s)."""
    import os
    import socket
    from urllib.parse import urlparse

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # a proxy decides; let huggingface_hub try
    parsed = urlparse(url)
    try:
        socket.create_connection(
            (parsed.hostname or "", parsed.port or 443), timeout=timeout
        ).close()
        return True
    except OSError:
        return False


def _hub_identity(spec: BackboneSpec, path: Path) -> str:
    revision = path.parent.name if path.parent.parent.name == "snapshots" else "local"
    return f"hf:{spec.hub_repo}@{revision[:12]}"


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors or a torch file, never unpickling arbitrary objects."""
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist; check --weights")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(
            f"{path}: not a weights file torch can load safely ({type(e).__name__}: {e}); "
            "use a .safetensors file or a plain state-dict .pth"
        ) from e
    for key in ("teacher", "model", "state_dict"):  # training checkpoints nest the weights
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, found {type(state).__name__}")
    return {k.removeprefix("backbone.").removeprefix("module."): v for k, v in state.items()}


def _load_weights(model: nn.Module, path: Path, name: str) -> str:
    from timm.models.vision_transformer import checkpoint_filter_fn

    state = checkpoint_filter_fn(
        read_state_dict(path), cast(Any, model)
    )  # converts Meta's key names
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"{path}: weights do not fit {name} (missing {result.missing_keys[:4]}, unexpected "
            f"{result.unexpected_keys[:4]}); pick the backbone these weights were trained as"
        )
    return f"sha256:{sha256_file(path)[:16]}"
