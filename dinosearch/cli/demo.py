"""``dinosearch demo``: the main job in one command (embed, index, train, index, evaluate)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from dinosearch.adapt.config import TrainConfig
from dinosearch.cli.common import (
    add_backbone_arguments,
    add_runtime_arguments,
    backbone_from_args,
    parse_ks,
)
from dinosearch.inputs.sample import sample_manifest

# The demo pools the mean of the patch tokens (not CLS): its raw maps are then an exact split of the
# score and its adapted maps account for ≥ 99 % of it; precision@10 on the sample holds (docs/explain.md).
DEMO_POOLING = "mean"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--images",
        default=None,
        help="labelled image folder or CSV/Parquet manifest (default: the bundled sample of 320 "
        "chest X-rays, dinosearch/sample)",
    )
    p.add_argument("--name", default=None, help="run name (default: from --images)")
    p.add_argument("--root", default=".", help="where runs/, indexes/ and reports/ live")
    g = p.add_argument_group("adapter training (see `dinosearch train`)")
    d = TrainConfig.for_demo()  # the demo's training defaults and why: adapt/config.py
    g.add_argument("--views", type=int, default=d.views, help="K augmented views cached per image")
    g.add_argument(
        "--epochs", type=int, default=d.epochs, help="cheap: epochs run on cached features"
    )
    g.add_argument(
        "--val-fraction",
        type=float,
        default=d.val_fraction,
        help="images held out (by group) for a val loss and best-epoch choice; 0 trains on all "
        "(the A/B report is the check)",
    )
    g.add_argument(
        "--no-clean-view", action="store_true", help="do not pair views with the clean view"
    )
    g.add_argument(
        "--train-images",
        type=int,
        default=1000,
        help="train on at most this many images (whole groups); 0 = all. View extraction "
        "costs K backbone passes per training image",
    )
    g.add_argument("--preset", default=d.preset, help="augmentation preset")
    g.add_argument("--train-batch-size", type=int, default=d.batch_size, help="view pairs per step")
    g.add_argument("--bottleneck", type=int, default=d.bottleneck)
    g.add_argument("--temperature", type=float, default=d.temperature)
    e = p.add_argument_group("evaluation (see `dinosearch eval`)")
    e.add_argument("--label-column", default=None, help="default: label")
    e.add_argument(
        "--group-column", default=None, help="default: patient_id when present; '' = none"
    )
    e.add_argument(
        "--stratify-column", default=None, help="default: source_repo when present; '' = none"
    )
    e.add_argument("--k", default="1,5,10,20")
    e.add_argument("--bootstrap", type=int, default=1000)
    add_backbone_arguments(p, pooling=DEMO_POOLING)
    add_runtime_arguments(p)


def default_name(images: str) -> str:
    path = Path(images).resolve()
    return (path.parent.name if path.is_file() else path.name) or "demo"


def run(args: argparse.Namespace) -> int:
    from dinosearch.demo import DemoConfig, run_demo

    start = time.perf_counter()
    images = args.images or str(sample_manifest())
    train = {
        "views": args.views,
        "epochs": args.epochs,
        "clean_view": not args.no_clean_view,
        "preset": args.preset,
        "bottleneck": args.bottleneck,
        "temperature": args.temperature,
        "batch_size": args.train_batch_size,
        "val_fraction": args.val_fraction,
        "seed": args.seed,
        "extract_batch_size": args.batch_size,
        "num_workers": args.workers,
    }
    config = DemoConfig(
        images=images,
        name=args.name or default_name(images),
        root=Path(args.root),
        train=train,
        train_images=args.train_images or None,
        label_column=args.label_column,
        group_column=args.group_column,
        stratify_column=args.stratify_column,
        ks=tuple(parse_ks(args.k)),
        n_boot=args.bootstrap,
        batch_size=args.batch_size,
        num_workers=args.workers,
        progress=not args.no_progress,
    )
    text = run_demo(config, backbone_from_args(args))
    print(text)
    print(f"demo finished in {time.perf_counter() - start:.0f} s")
    return 0
