"""Flags shared by several subcommands, mapped one-to-one onto load_backbone's arguments."""

from __future__ import annotations

import argparse

from dinosearch.backbones import Backbone, load_backbone
from dinosearch.core.runtime import resolve_device


def add_backbone_arguments(
    p: argparse.ArgumentParser, *, default: str = "dinov2_vits14", pooling: str = "cls"
) -> None:
    g = p.add_argument_group("backbone")
    g.add_argument("--backbone", default=default, help="backbone name (see `dinosearch backbones`)")
    g.add_argument(
        "--weights",
        default="pretrained",
        help="'pretrained' (Hugging Face hub / local cache), 'random' (seeded, untrained) or a file path",
    )
    g.add_argument(
        "--image-size", type=int, default=224, help="crop side in pixels, multiple of 14"
    )
    g.add_argument(
        "--pooling",
        choices=["cls", "cls+mean", "mean"],
        default=pooling,
        help="CLS token, CLS concatenated with the mean of patch tokens, or that mean alone "
        "(whose similarity splits exactly over patches: `dinosearch explain`); default %(default)s",
    )
    g.add_argument("--seed", type=int, default=0, help="seed for random weights and augmentations")
    g.add_argument(
        "--half",
        action="store_true",
        help="fp16 weights (CUDA only; features differ slightly and the fingerprint says |fp16w)",
    )
    g.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the backbone (CUDA only; a minute to compile; fingerprint |compiled)",
    )


def add_runtime_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("runtime")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    g.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="images per backbone forward (default: 32 on CPU, up to 512 on CUDA)",
    )
    g.add_argument(
        "--workers", type=int, default=None, help="DataLoader workers (default: by device)"
    )
    g.add_argument("--no-progress", action="store_true", help="hide progress bars")


def backbone_from_args(args: argparse.Namespace) -> Backbone:
    return load_backbone(
        args.backbone,
        args.weights,
        image_size=args.image_size,
        pooling=args.pooling,
        seed=args.seed,
        device=resolve_device(args.device),
        half=args.half,
        compile=args.compile,
    )


def parse_ks(text: str) -> list[int]:
    """'1,5,10' → [1, 5, 10] (sorted, unique, positive)."""
    try:
        ks = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError as e:
        raise ValueError(
            f"--k {text!r}: expected comma-separated integers such as 1,5,10,20"
        ) from e
    if not ks or ks[0] < 1:
        raise ValueError(f"--k {text!r}: cut-offs must be positive integers")
    return ks
