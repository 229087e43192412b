"""``dinosearch backbones``: list the known backbone names."""

from __future__ import annotations

import argparse

from dinosearch.backbones.backbone import BACKBONES, list_backbones


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.set_defaults()


def run(args: argparse.Namespace) -> int:
    for name in list_backbones():
        spec = BACKBONES[name]
        source = spec.hub_repo or "no pretrained weights (tiny, for tests)"
        print(f"{name:22s} timm:{spec.timm_arch:34s} {source}")
    print(
        "openclip:<model>       OpenCLIP image tower, e.g. openclip:hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
    )
    return 0
