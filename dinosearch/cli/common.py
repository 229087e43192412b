"""Helpers the subcommands share. Light at import: torch loads inside the functions."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from dinosearch.backbones.config import BackboneSettings, RuntimeSettings
from dinosearch.core.config import add_config_arguments
from dinosearch.evaluate.config import check_ks

if TYPE_CHECKING:
    from dinosearch.backbones import Backbone


def add_backbone_arguments(p: argparse.ArgumentParser, *, default: str = "dinov2_vits14") -> None:
    """``--backbone``, ``--weights``, ``--image-size``, ``--pooling``, ``--seed``, ``--half``, ``--compile``."""
    add_config_arguments(p, BackboneSettings, defaults={"backbone": default})


def add_runtime_arguments(p: argparse.ArgumentParser) -> None:
    """``--device``, ``--batch-size``, ``--workers``, ``--no-progress``."""
    add_config_arguments(p, RuntimeSettings)


def backbone_from_config(config: Any) -> Backbone:
    """The backbone a config with ``BackboneSettings`` and a ``device`` names (loads torch)."""
    from dinosearch.backbones import load_backbone
    from dinosearch.backbones.config import backbone_arguments
    from dinosearch.core.runtime import resolve_device

    kw = backbone_arguments(config)
    return load_backbone(kw.pop("name"), kw.pop("weights"), device=resolve_device(config.device), **kw)  # fmt: skip


def backbone_from_args(args: argparse.Namespace) -> Backbone:
    """As ``backbone_from_config``, from parsed flags (kept for scripts of earlier releases)."""
    return backbone_from_config(args)


def parse_ks(text: str) -> list[int]:
    """'1,5,10' → [1, 5, 10] (sorted, unique, positive)."""
    try:
        ks = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as e:
        raise ValueError(
            f"--k {text!r}: expected comma-separated integers such as 1,5,10,20"
        ) from e
    return list(check_ks(tuple(ks)))
