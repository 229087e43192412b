"""DINOv2 backbones through timm, registered as ``dinov2_vit{s,b,l,g}14[_reg]`` and ``dinov2_tiny_test``.

Weights come from the Hugging Face hub through timm's names (honouring the local cache and
``HF_HUB_OFFLINE``), from a local file (official Meta ``dinov2_vit*14*_pretrain.pth`` or timm
``.safetensors``), or from a seeded random initialisation for offline pipelines and tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from dinosearch.backbones.backbone import Backbone, Pooling, Preprocess, WeightsUnavailableError
from dinosearch.backbones.registry import register_backbone
from dinosearch.core.storage import sha256_file


@dataclass(frozen=True)
class Dinov2Spec:
    """A DINOv2 backbone: its timm architecture and the hub repo of its pretrained weights."""

    timm_arch: str
    hub_repo: str | None
    overrides: tuple[tuple[str, Any], ...] = ()  # timm kwargs that shrink the test model


def _dinov2(arch: str) -> Dinov2Spec:
    return Dinov2Spec(arch, f"timm/{arch}.lvd142m")


DINOV2: dict[str, Dinov2Spec] = {
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
    "dinov2_tiny_test": Dinov2Spec(
        "vit_small_patch14_dinov2",
        None,
        (("embed_dim", 32), ("depth", 2), ("num_heads", 2), ("img_size", 56), ("init_values", 1.0)),
    ),
}


def load_dinov2(
    name: str, weights: str, *, image_size: int, pooling: Pooling, seed: int
) -> Backbone:
    """Build the DINOv2 backbone ``name`` on CPU, its weights found before the model is built."""
    if image_size % 14:
        raise ValueError(
            f"--image-size {image_size} must be a multiple of the patch size 14 (e.g. 224)"
        )
    spec = DINOV2[name]
    path = (
        None
        if weights == "random"
        else _hub_file(name, spec)
        if weights == "pretrained"
        else Path(weights)
    )
    model = _build(spec, seed)  # after the weights are found: fail fast when they are not
    if path is None:
        identity = f"random(seed={seed})"
    else:
        identity = _load_weights(model, path, name)
        if weights == "pretrained":
            identity = _hub_identity(spec, path)
    return Backbone(
        model,
        name=name,
        weights=identity,
        preprocess=_preprocess(model, image_size),
        pooling=pooling,
        random_init=path is None,
    )


for _name, _spec in DINOV2.items():
    _source = _spec.hub_repo or "no pretrained weights (tiny, for tests)"
    register_backbone(_name, description=f"timm:{_spec.timm_arch:34s} {_source}")(load_dinov2)


def _build(spec: Dinov2Spec, seed: int) -> nn.Module:
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
    resize_size = round(image_size / 0.875)  # the common retrieval recipe: 256 → 224
    return Preprocess.from_config(cfg, image_size=image_size, resize_size=resize_size)


def _hub_file(name: str, spec: Dinov2Spec) -> Path:
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


def _hub_identity(spec: Dinov2Spec, path: Path) -> str:
    revision = path.parent.name if path.parent.parent.name == "snapshots" else "local"
    return f"hf:{spec.hub_repo}@{revision[:12]}"


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors or a torch file, never unpickling arbitrary objects."""
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist; check --weights")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as e:  # SafetensorError: a pickle renamed, a truncated download
            raise ValueError(
                f"{path}: not a safetensors file ({e}); check --weights, or download it again"
            ) from e
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
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(
            f"{path}: expected a state dict of tensors, found {type(state).__name__}; "
            "check --weights"
        )
    return {k.removeprefix("backbone.").removeprefix("module."): v for k, v in state.items()}


def _load_weights(model: nn.Module, path: Path, name: str) -> str:
    from timm.models.vision_transformer import checkpoint_filter_fn

    try:
        state = checkpoint_filter_fn(read_state_dict(path), cast(Any, model))  # Meta's key names
        result = model.load_state_dict(state, strict=False)
    except (RuntimeError, KeyError, IndexError) as e:  # tensors of other shapes
        raise ValueError(
            f"{path}: weights do not fit {name} ({str(e).splitlines()[0][:200]}); "
            "pick the backbone these weights were trained as"
        ) from e
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"{path}: weights do not fit {name} (missing {result.missing_keys[:4]}, unexpected "
            f"{result.unexpected_keys[:4]}); pick the backbone these weights were trained as"
        )
    return f"sha256:{sha256_file(path)[:16]}"
