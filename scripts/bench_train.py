"""Benchmark adapter training: on-line views (the reference design) versus cached views.

On-line: every epoch runs two fresh augmented views of every image through the backbone.
Cached: K augmented views per image go through the backbone once; epochs then sample pairs of them.
Both train the same adapter with the same batch size and epochs, without validation, from a cold
cache. A full on-line run is long on a CPU, so ``--online-epochs N`` measures N epochs and
extrapolates linearly (set it to ``--epochs`` to measure them all).

    python scripts/bench_train.py --count 256 --epochs 20 --views 4 --online-epochs 2
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

from dinosearch.adapt.config import TrainConfig
from dinosearch.adapt.fit import fit_adapter
from dinosearch.adapt.train import train_adapter
from dinosearch.backbones import load_backbone
from dinosearch.inputs.records import load_records

DEFAULT_IMAGES = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "cxr" / "manifest.parquet"
)


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_cached(records, backbone, config: TrainConfig, work: Path) -> dict:  # type: ignore[no-untyped-def]
    """Cold cache → K views → train; then a retraining run from the warm cache."""
    start = time.perf_counter()
    result = train_adapter(records, backbone, work / "cached", config, cache_dir=work / "cache")
    total = time.perf_counter() - start
    loop = result.history[-1]["seconds"]
    tracemalloc.start()
    start = time.perf_counter()
    train_adapter(
        records, backbone, work / "cached2", config, cache_dir=work / "cache", progress=False
    )
    retrain = time.perf_counter() - start
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    pairs = config.epochs * len(records)
    return {
        "total_s": total,
        "views_s": total - loop,
        "train_loop_s": loop,
        "retrain_s": retrain,
        "pairs_per_s": pairs / loop,
        "retrain_traced_peak_mib": traced_peak / 2**20,
        "peak_rss_mib": peak_rss_mib(),
    }


def run_online(records, backbone, config: TrainConfig, work: Path, epochs: int) -> dict:  # type: ignore[no-untyped-def]
    """``epochs`` measured on-line epochs, extrapolated to ``config.epochs``."""
    measured = TrainConfig(**{**config.to_dict(), "online": True, "epochs": epochs})
    start = time.perf_counter()
    result = train_adapter(records, backbone, work / "online", measured, cache_dir=work / "ocache")
    total = time.perf_counter() - start
    loop = result.history[-1]["seconds"]
    setup, per_epoch = total - loop, loop / epochs
    return {
        "measured_epochs": epochs,
        "measured_s": total,
        "setup_s": setup,
        "per_epoch_s": per_epoch,
        "total_s": setup + per_epoch * config.epochs,
        "extrapolated": epochs < config.epochs,
        "pairs_per_s": epochs * len(records) / loop,
        "peak_rss_mib": peak_rss_mib(),
    }


def adapter_throughput(dim: int, config: TrainConfig, n: int = 8192) -> float:
    """Pairs/s of the adapter loop alone on random cached features of ``n`` images × K views."""
    pool = np.random.default_rng(0).normal(size=(n, config.views, dim)).astype(np.float32)
    cfg = TrainConfig(**{**config.to_dict(), "epochs": 2})
    fit = fit_adapter(pool, np.arange(n), np.arange(0), cfg, progress=False)
    return 2 * n / fit.history[-1]["seconds"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--images", default=str(DEFAULT_IMAGES), help="image folder or manifest")
    p.add_argument("--count", type=int, default=256, help="images (a seeded random sample)")
    p.add_argument("--backbone", default="dinov2_vits14")
    p.add_argument("--weights", default="random")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--views", type=int, default=4, help="K cached views per image")
    p.add_argument("--batch-size", type=int, default=64, help="pairs per step (both ways)")
    p.add_argument("--extract-batch-size", type=int, default=32, help="images per backbone forward")
    p.add_argument(
        "--online-epochs",
        type=int,
        default=2,
        help="on-line epochs actually measured; the rest is extrapolated linearly",
    )
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)

    records = load_records(args.images)[0]
    count = min(args.count, len(records))
    records = records.sample(count, random_state=0).reset_index(drop=True)
    backbone = load_backbone(args.backbone, args.weights, image_size=args.image_size)
    config = TrainConfig(
        views=args.views,
        clean_view=False,
        epochs=args.epochs,
        pairs_per_step=args.batch_size,
        val_fraction=0.0,
        label_column=None,
        batch_size=args.extract_batch_size,
        num_workers=args.workers,
    )
    print(
        f"{count} images, {backbone.fingerprint}, {args.epochs} epochs, batch {args.batch_size}, "
        f"K={args.views}, torch threads {torch.get_num_threads()}",
        flush=True,
    )
    for path in records["path"]:  # warm the OS file cache and the model, so order does not matter
        Path(path).read_bytes()
    with torch.inference_mode():
        backbone(torch.zeros(2, 3, args.image_size, args.image_size))
    with tempfile.TemporaryDirectory(prefix="bench_train-") as tmp:
        cached = run_cached(records, backbone, config, Path(tmp))
        online = run_online(
            records, backbone, config, Path(tmp), min(args.online_epochs, args.epochs)
        )
    throughput = adapter_throughput(backbone.embed_dim, config)
    speedup = online["total_s"] / cached["total_s"]
    note = (
        f"extrapolated from {online['measured_epochs']} measured epochs"
        if online["extrapolated"]
        else "measured"
    )
    lines = [
        f"on-line  ({args.epochs} epochs × 2 fresh views): {online['total_s']:8.1f} s  [{note}: "
        f"setup {online['setup_s']:.1f} s + {online['per_epoch_s']:.1f} s/epoch]",
        f"cached   (K={args.views} views once + {args.epochs} epochs):    {cached['total_s']:8.1f} s  "
        f"[views {cached['views_s']:.1f} s + training {cached['train_loop_s']:.2f} s]",
        f"speed-up end to end: {speedup:.1f}×",
        f"retraining from the warm cache: {cached['retrain_s']:.2f} s",
        f"adapter training on cached features: {cached['pairs_per_s']:,.0f} pairs/s in this run, "
        f"{throughput:,.0f} pairs/s on 8192 × {args.views} random {backbone.embed_dim}-d features",
        f"on-line throughput: {online['pairs_per_s']:.1f} pairs/s",
        f"peak RSS: {cached['peak_rss_mib']:.0f} MiB after cached, {online['peak_rss_mib']:.0f} MiB "
        f"after on-line; traced Python/NumPy peak while retraining: "
        f"{cached['retrain_traced_peak_mib']:.1f} MiB",
    ]
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "args": vars(args),
                    "cached": cached,
                    "online": online,
                    "speedup": speedup,
                    "adapter_pairs_per_s": throughput,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
