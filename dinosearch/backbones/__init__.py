"""Backbones stage: a registry of named frozen backbones (DINOv2 via timm, OpenCLIP) and their preprocessing."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dinosearch.core.lazy import lazy_exports

# imported before any name resolves: they register themselves (backbones.registry.BUILTIN)
BUILTIN_FAMILIES = ("dinosearch.backbones.dinov2_timm", "dinosearch.backbones.openclip")

# public name → the module that defines it (imported on first use: `--help` stays light)
_API = {
    "Backbone": "dinosearch.backbones.backbone",
    "Preprocess": "dinosearch.backbones.backbone",
    "WeightsUnavailableError": "dinosearch.backbones.backbone",
    "read_state_dict": "dinosearch.backbones.dinov2_timm",
    "backbone_from_info": "dinosearch.backbones.registry",
    "describe": "dinosearch.backbones.registry",
    "list_backbones": "dinosearch.backbones.registry",
    "list_families": "dinosearch.backbones.registry",
    "load_backbone": "dinosearch.backbones.registry",
    "register_backbone": "dinosearch.backbones.registry",
    "register_family": "dinosearch.backbones.registry",
}
__all__ = [
    "Backbone",
    "Preprocess",
    "WeightsUnavailableError",
    "backbone_from_info",
    "describe",
    "list_backbones",
    "list_families",
    "load_backbone",
    "read_state_dict",
    "register_backbone",
    "register_family",
]

if TYPE_CHECKING:
    from dinosearch.backbones.backbone import Backbone, Preprocess, WeightsUnavailableError
    from dinosearch.backbones.dinov2_timm import read_state_dict
    from dinosearch.backbones.registry import (
        backbone_from_info,
        describe,
        list_backbones,
        list_families,
        load_backbone,
        register_backbone,
        register_family,
    )

__getattr__ = lazy_exports(__name__, _API, globals(), first=BUILTIN_FAMILIES)
