"""Backbones stage: a registry of named frozen backbones (DINOv2 via timm, OpenCLIP) and their preprocessing."""

# Importing the built-in families registers them, as timm's models/__init__ does.
from dinosearch.backbones import dinov2_timm, openclip  # noqa: F401
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
