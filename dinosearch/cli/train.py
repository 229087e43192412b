"""``dinosearch train``: images → cached augmented views → a domain adapter folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from dinosearch.adapt.config import TrainConfig
from dinosearch.cli.common import add_backbone_arguments, add_runtime_arguments, backbone_from_args
from dinosearch.inputs.records import load_records


def _optional(value: str) -> str | None:
    return None if value.lower() in ("", "none") else value


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    p.add_argument(
        "--images", required=True, help="image folder (recursive) or CSV/Parquet manifest"
    )
    p.add_argument("--out", required=True, help="adapter folder to write")
    p.add_argument("--path-column", default=None, help="manifest column holding image paths")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images")
    p.add_argument(
        "--features",
        default=None,
        help="a `dinosearch embed` folder of these images: reused as the clean view",
    )
    p.add_argument(
        "--cache-dir",
        default=None,
        help="view cache root (default $DINOSEARCH_CACHE/views or ~/.cache/dinosearch/views)",
    )
    g = p.add_argument_group("training")
    g.add_argument(
        "--views", type=int, default=d.views, help="augmented views cached per image (K)"
    )
    g.add_argument(
        "--no-clean-view", action="store_true", help="leave the eval view out of the pool"
    )
    g.add_argument("--epochs", type=int, default=d.epochs)
    g.add_argument(
        "--train-batch-size",
        type=int,
        default=d.batch_size,
        help="positive pairs per step (--batch-size is images per backbone forward)",
    )
    g.add_argument("--lr", type=float, default=d.lr)
    g.add_argument("--weight-decay", type=float, default=d.weight_decay)
    g.add_argument(
        "--warmup", type=int, default=d.warmup, help="warm-up epochs before cosine decay"
    )
    g.add_argument("--temperature", type=float, default=d.temperature)
    g.add_argument("--preset", default=d.preset, help="augmentation preset: xray or natural")
    g.add_argument(
        "--hflip",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="horizontal flips (default: the preset's; off for xray)",
    )
    g.add_argument("--bottleneck", type=int, default=d.bottleneck)
    g.add_argument("--dropout", type=float, default=d.dropout)
    g.add_argument("--val-fraction", type=float, default=d.val_fraction)
    g.add_argument(
        "--group-column",
        type=_optional,
        default=d.group_column,
        help="column grouping images of one patient: val split and same-group positives "
        "('none' to disable)",
    )
    g.add_argument(
        "--label-column",
        type=_optional,
        default=d.label_column,
        help="column for validation kNN precision only ('none' to disable)",
    )
    g.add_argument(
        "--same-group-positives",
        choices=["off", "mix", "only"],
        default=d.same_group_positives,
        help="pair two images of one group (MICLe): mixed with view pairs or alone",
    )
    g.add_argument(
        "--select-by",
        choices=["loss", "knn"],
        default=d.select_by,
        help="best epoch by val loss or val kNN precision",
    )
    g.add_argument(
        "--online",
        action="store_true",
        help="fresh augmented views through the backbone every step (slow; for GPUs)",
    )
    add_backbone_arguments(p)
    add_runtime_arguments(p)


def run(args: argparse.Namespace) -> int:
    from dinosearch.adapt.train import train_adapter
    from dinosearch.features.folder import load_features

    records, _ = load_records(args.images, path_column=args.path_column)
    if args.limit is not None:
        records = records.iloc[: args.limit].reset_index(drop=True)
    config = TrainConfig(
        views=args.views,
        clean_view=not args.no_clean_view,
        epochs=args.epochs,
        batch_size=args.train_batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup=args.warmup,
        temperature=args.temperature,
        preset=args.preset,
        hflip=args.hflip,
        bottleneck=args.bottleneck,
        dropout=args.dropout,
        seed=args.seed,
        val_fraction=args.val_fraction,
        group_column=args.group_column,
        label_column=args.label_column,
        same_group_positives=args.same_group_positives,
        select_by=args.select_by,
        online=args.online,
        extract_batch_size=args.batch_size,
        num_workers=args.workers,
    )
    backbone = backbone_from_args(args)
    if backbone.random_init:
        print(
            f"note: {backbone.name} is randomly initialised ({backbone.weights}): features are untrained"
        )
    clean = load_features(args.features) if args.features else None
    result = train_adapter(
        records,
        backbone,
        args.out,
        config,
        clean_features=clean,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        progress=not args.no_progress,
    )
    for path, reason in result.skipped.itertuples(index=False):
        print(f"skipped {path}: {reason}")
    print(result.summary)
    return 0
