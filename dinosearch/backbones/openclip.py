"""OpenCLIP image towers (e.g. BiomedCLIP) as comparison backbones: the ``openclip:<model>`` family.

``openclip:hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224`` loads through the hub
cache; ``openclip:ViT-B-32`` with ``--weights PATH`` loads a local checkpoint; ``--weights random``
builds an untrained tower for offline pipelines. open_clip is imported only when one is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dinosearch.backbones.backbone import Backbone, Pooling, Preprocess, WeightsUnavailableError
from dinosearch.backbones.registry import register_family
from dinosearch.core.storage import sha256_file

PREFIX = "openclip:"


@register_family(
    PREFIX,
    description="OpenCLIP image tower, e.g. openclip:hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224",
)
def load_openclip(
    model_name: str, weights: str, *, image_size: int, pooling: Pooling, seed: int
) -> Backbone:
    """Build ``openclip:<model_name>`` on CPU; the image tower's output is the feature (B, output_dim).

    ``pooling`` is not used: the tower pools itself, and the backbone records "cls".
    """
    import open_clip

    model, identity = _create(model_name, weights, seed)
    cfg = open_clip.get_model_preprocess_cfg(model)
    size = cfg.get("size", image_size)
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    visual = model.visual
    visual.output_dim = int(getattr(visual, "output_dim", 0) or model.text_projection.shape[1])
    model.eval().requires_grad_(False)
    tower = _ImageTower(model, visual.output_dim)
    # CLIP recipe: resize the short side to the crop size, then centre-crop
    preprocess = Preprocess.from_config(cfg, image_size=size, resize_size=size)
    return Backbone(
        tower,
        name=PREFIX + model_name,
        weights=identity,
        preprocess=preprocess,
        random_init=weights == "random",
    )


def _create(model_name: str, weights: str, seed: int) -> tuple[Any, str]:
    """The whole CLIP model and the identity of its weights."""
    import open_clip

    name = PREFIX + model_name
    torch.manual_seed(seed)
    try:
        if weights == "random":
            model = open_clip.create_model(model_name, pretrained=None)
            identity = f"random(seed={seed})"
        elif weights == "pretrained":
            if not model_name.startswith("hf-hub:"):
                raise ValueError(
                    f"{name}: pretrained OpenCLIP weights come from the hub as openclip:hf-hub:<repo>; "
                    "otherwise pass --weights PATH or --weights random"
                )
            model = open_clip.create_model(model_name)  # hf-hub: names carry their weights
            identity = f"hf:{model_name.removeprefix('hf-hub:')}"
        else:
            path = Path(weights)
            if not path.is_file():
                raise FileNotFoundError(f"weights file {path} does not exist; check --weights")
            model = open_clip.create_model(model_name, pretrained=str(path))
            identity = f"sha256:{sha256_file(path)[:16]}"
    except (FileNotFoundError, ValueError):
        raise
    except RuntimeError as e:
        if "Unknown model" in str(e) or "not found" in str(e).lower():
            raise ValueError(
                f"unknown OpenCLIP model {model_name!r}; see open_clip.list_models()"
            ) from e
        raise WeightsUnavailableError(
            f"OpenCLIP weights for {model_name} could not be loaded ({e}); pass --weights PATH or "
            "--weights random"
        ) from e
    except Exception as e:  # hub errors: offline, missing cache
        raise WeightsUnavailableError(
            f"OpenCLIP weights for {model_name} could not be loaded ({type(e).__name__}); they are fetched "
            "through the Hugging Face cache: pass --weights PATH or --weights random"
        ) from e
    return model, identity


class _ImageTower(torch.nn.Module):
    """Only the image side of a CLIP model, so the text tower's weights are not held for nothing."""

    def __init__(self, model: torch.nn.Module, output_dim: int) -> None:
        super().__init__()
        self.visual: Any = model.visual
        self.output_dim = output_dim

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.visual(images)
