"""The reference design's on-line training: fresh augmented views through the backbone every epoch.

About 10x the cost of training on cached views (``view_cache.py``); kept behind ``--online`` for very
large collections on a GPU, where caching K views per image would not fit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from dinosearch.adapt.adapter import DomainAdapter
from dinosearch.adapt.augment import build_augment
from dinosearch.adapt.config import TrainConfig
from dinosearch.adapt.fit import Step
from dinosearch.adapt.losses import info_nce
from dinosearch.adapt.view_cache import view_seed
from dinosearch.backbones import Backbone
from dinosearch.backbones.transforms import ImageTransform
from dinosearch.features.loader import ImageDataset, collate, default_workers, worker_init


def online_epoch(
    backbone: Backbone,
    records: pd.DataFrame,
    train_rows: np.ndarray,
    groups: np.ndarray,
    config: TrainConfig,
    progress: bool,
) -> Callable[[DomainAdapter, int, Step], float]:
    """``fit_adapter``'s epoch on two fresh augmented views per training image through the backbone."""
    augment = build_augment(config.preset, backbone.preprocess, hflip=config.hflip)
    groups_t = torch.from_numpy(groups)
    threads = torch.get_num_threads()  # for the backbone; the adapter runs on one (see fit_adapter)

    def epoch_fn(adapter: DomainAdapter, epoch: int, step: Step) -> float:
        rng = np.random.default_rng([config.seed, 2, epoch])
        rows = train_rows[rng.permutation(len(train_rows))]
        paths = records["path"].iloc[rows].astype(str).tolist()
        fresh = iter_fresh_pairs(
            paths,
            backbone,
            augment,
            seed=view_seed(config.seed, 1000 + epoch),
            batch_size=config.pairs_per_step,
            num_workers=config.num_workers,
            threads=threads,
        )
        total, count = 0.0, 0
        steps = math.ceil(len(rows) / config.pairs_per_step)
        for pos, feats in tqdm(
            fresh, desc=f"epoch {epoch}", total=steps, leave=False, disable=not progress
        ):  # feats (b, 2, D)
            g = groups_t[torch.from_numpy(rows[pos])].to(feats.device)
            loss = info_nce(
                adapter(feats[:, 0]), adapter(feats[:, 1]), config.temperature, groups=g
            )
            step(loss)
            total, count = total + float(loss.detach()) * len(pos), count + len(pos)
        return total / max(count, 1)

    return epoch_fn


class _TwoViews:
    """Two independent draws of ``transform``: PIL → (2, 3, S, S)."""

    def __init__(self, transform: ImageTransform) -> None:
        self.transform = transform

    def __call__(self, img: Any) -> torch.Tensor:
        return torch.stack([self.transform(img), self.transform(img)])


def iter_fresh_pairs(
    paths: list[str],
    backbone: Backbone,
    transform: ImageTransform,
    *,
    seed: int,
    batch_size: int,
    num_workers: int | None = None,
    threads: int | None = None,
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """On-line views: yield (positions (b,), features (b, 2, D) float32 tensor) of two fresh views per image.

    The reference design's way, one backbone pass per view per epoch; unreadable images are dropped.
    ``threads``: torch CPU threads for the backbone forward (the caller's setting is restored).
    """
    device = next(backbone.parameters()).device
    workers = default_workers(device) if num_workers is None else num_workers
    loader = DataLoader(
        ImageDataset(paths, _TwoViews(transform), seed),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
        worker_init_fn=worker_init if workers else None,
    )
    for batch in loader:
        if batch.images is None or len(batch.indices) < 2:
            continue
        images = batch.images.to(device, non_blocking=True).flatten(0, 1)  # (2b, 3, S, S)
        before = torch.get_num_threads()
        torch.set_num_threads(threads or before)
        try:
            with torch.no_grad(), torch.autocast(device.type, enabled=device.type == "cuda"):
                feats = backbone(images).float()  # (2b, D)
        finally:
            torch.set_num_threads(before)
        yield batch.indices.numpy(), feats.view(len(batch.indices), 2, -1)
