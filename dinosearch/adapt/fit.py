"""fit_adapter: the training loop on (N, P, D) view features, apart from any I/O.

Standardise with the training features' mean/std → each epoch one positive pair per training image
(``pairs.sample_pairs``) → AdamW, warm-up + cosine → val loss and kNN precision → best epoch kept.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from dinosearch.adapt.adapter import AdapterConfig, DomainAdapter
from dinosearch.adapt.config import TrainConfig
from dinosearch.adapt.losses import info_nce
from dinosearch.adapt.pairs import sample_pairs
from dinosearch.adapt.vectors import l2_normalize, to_vectors
from dinosearch.core import metrics
from dinosearch.core.ranking import Side, eligibility, rank_exact
from dinosearch.core.runtime import seed_everything

Step = Callable[[torch.Tensor], None]


def knn_precision(
    vectors: np.ndarray, labels: np.ndarray, groups: np.ndarray, queries: np.ndarray, k: int = 10
) -> float:
    """Mean precision@k of ``queries`` (rows) among all (N, D) unit ``vectors``, skipping the query's
    own group (``core.ranking.rank_exact``; an empty slot, when fewer than k others exist, is a miss);
    queries without a label (code -1) are left out."""
    queries = queries[labels[queries] >= 0]
    if len(queries) == 0:
        return float("nan")
    k = min(k, vectors.shape[0] - 1)
    onehot = labels[:, None] == np.arange(labels.max() + 1)  # (N, L); code -1: no label
    gallery = Side(np.arange(len(vectors)), onehot, np.asarray(groups))
    query = gallery.take(queries)
    ranked = rank_exact(vectors[queries], vectors, k, query, gallery)  # (q, k)
    n_relevant, _ = eligibility(query, gallery)
    per_query = metrics.retrieval_metrics(ranked, query.labels, onehot, n_relevant, [k])
    hits = np.rint(per_query[f"precision@{k}"] * k)  # (q,) relevant items in each top k
    return float(hits.sum() / (len(queries) * k))  # all hits / (q·k): the mean, rounded once


def _batches(n: int, batch_size: int) -> list[np.ndarray]:
    """Near-equal consecutive batches of about ``batch_size`` (never a tiny remainder)."""
    return np.array_split(np.arange(n), max(1, round(n / batch_size))) if n >= 2 else []


def _lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _pool_loss(
    adapter: DomainAdapter,
    pool: torch.Tensor,
    pairs: tuple[np.ndarray, ...],
    groups: torch.Tensor,
    config: TrainConfig,
    step: Step | None = None,
) -> float:
    """Mean InfoNCE over batches of ``pairs`` of pool rows; ``step(loss)`` trains when given."""
    rows, va, partner, vb = (torch.from_numpy(p).to(pool.device) for p in pairs)
    total, count = 0.0, 0
    for idx in _batches(len(rows), config.pairs_per_step):
        i = torch.from_numpy(idx).to(pool.device)
        za = adapter(pool[rows[i], va[i]])  # (b, D)
        zb = adapter(pool[partner[i], vb[i]])  # (b, D)
        loss = info_nce(za, zb, config.temperature, groups=groups[rows[i]])
        if step is not None:
            step(loss)
        total, count = total + float(loss.detach()) * len(idx), count + len(idx)
    return total / max(count, 1)


@dataclass
class Fit:
    """What ``fit_adapter`` returns: the best epoch's adapter and how training went."""

    adapter: DomainAdapter  # eval mode, best epoch's weights
    history: list[dict[str, Any]]  # epoch 0 is before training
    best_epoch: int
    knn_baselines: dict[str, float]  # val kNN precision of raw and standardised-only features


def fit_adapter(
    pool: np.ndarray,
    train_rows: np.ndarray,
    val_rows: np.ndarray,
    config: TrainConfig,
    *,
    groups: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    ref_view: int = -1,
    device: str | torch.device = "cpu",
    progress: bool = True,
    online_epoch: Callable[[DomainAdapter, int, Step], float] | None = None,
) -> Fit:
    """Train an adapter on view features; the loop, apart from any I/O.

    Args:
        pool: (N, P, D) float32 features of P views per image (online: val rows only, + ref view).
        train_rows, val_rows: row indices into ``pool``.
        config: see ``TrainConfig``.
        groups: (N,) int group ids (same-group positives, masked negatives, kNN exclusion).
        labels: (N,) int label codes (-1: none) for val kNN precision@k; None to skip it.
        ref_view: the view embedded for kNN (the clean one when present).
        online_epoch: trains one epoch itself (fresh views) instead of sampling pool pairs.
    """
    threads = torch.get_num_threads()
    if torch.device(device).type == "cpu":
        torch.set_num_threads(1)  # adapter-sized matmuls: thread hand-offs cost more than they save
    try:
        return _fit(
            pool,
            train_rows,
            val_rows,
            config,
            groups,
            labels,
            ref_view,
            device,
            progress,
            online_epoch,
        )
    finally:
        torch.set_num_threads(threads)


def _fit(
    pool: np.ndarray,
    train_rows: np.ndarray,
    val_rows: np.ndarray,
    config: TrainConfig,
    groups: np.ndarray | None,
    labels: np.ndarray | None,
    ref_view: int,
    device: str | torch.device,
    progress: bool,
    online_epoch: Callable[[DomainAdapter, int, Step], float] | None,
) -> Fit:
    n, num_views, dim = pool.shape
    groups = np.arange(n) if groups is None else np.asarray(groups, dtype=np.int64)
    seed_everything(config.seed)
    adapter = DomainAdapter(
        AdapterConfig(dim, config.bottleneck, config.dropout, config.residual_init)
    )
    stats = pool[train_rows][:, ref_view] if online_epoch else pool[train_rows]
    adapter.set_standardization(stats.reshape(-1, dim))
    adapter.to(device)
    pool_t = torch.from_numpy(np.ascontiguousarray(pool, dtype=np.float32)).to(device)  # (N, P, D)
    groups_t = torch.from_numpy(groups).to(device)
    steps = (
        math.ceil(len(train_rows) / config.pairs_per_step)
        if online_epoch
        else len(_batches(len(train_rows), config.pairs_per_step))
    )
    optimizer, step = _optimizer(adapter, config, steps)
    check = _Validation(adapter, pool, pool_t, val_rows, groups, groups_t, labels, ref_view, config)

    start = time.perf_counter()
    history: list[dict[str, Any]] = [{"epoch": 0, "train_loss": None, **check(), "seconds": 0.0}]
    best_state, best_score, best_epoch = copy.deepcopy(adapter.state_dict()), math.inf, 0
    bar = tqdm(range(1, config.epochs + 1), desc="train", unit="epoch", disable=not progress)
    for epoch in bar:
        adapter.train()
        if online_epoch is not None:
            train_loss = online_epoch(adapter, epoch, step)
        else:
            rng = np.random.default_rng([config.seed, 2, epoch])
            pairs = sample_pairs(train_rows, groups, num_views, config, rng)
            train_loss = _pool_loss(adapter, pool_t, pairs, groups_t, config, step)
        entry = {"epoch": epoch, "train_loss": train_loss, **check()}
        entry |= {"lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - start}
        history.append(entry)
        if config.select_by == "knn" and check.can_knn:
            score = -entry["knn_adapted"]
        else:
            score = entry.get("val_loss", -epoch)  # without validation the last epoch wins
        if score < best_score:
            best_state, best_score, best_epoch = copy.deepcopy(adapter.state_dict()), score, epoch
        shown = {"loss": train_loss, "val": entry.get("val_loss"), "knn": entry.get("knn_adapted")}
        bar.set_postfix({k: f"{v:.3f}" for k, v in shown.items() if v is not None})  # what exists
    adapter.load_state_dict(best_state)
    return Fit(adapter.eval(), history, best_epoch, check.baselines)


def _optimizer(
    adapter: DomainAdapter, config: TrainConfig, steps: int
) -> tuple[torch.optim.Optimizer, Step]:
    """AdamW (no decay on biases, norms and alpha), linear warm-up then cosine; → (it, step(loss))."""
    decay = [p for p in adapter.parameters() if p.ndim >= 2]
    no_decay = [p for p in adapter.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.lr,
    )
    warmup = max(1, config.warmup * steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: _lr_factor(s, warmup, config.epochs * steps)
    )

    def step(loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()

    return optimizer, step


class _Validation:
    """Val loss on fixed view pairs and val kNN precision@k (when labels exist), each epoch."""

    def __init__(
        self,
        adapter: DomainAdapter,
        pool: np.ndarray,
        pool_t: torch.Tensor,
        val_rows: np.ndarray,
        groups: np.ndarray,
        groups_t: torch.Tensor,
        labels: np.ndarray | None,
        ref_view: int,
        config: TrainConfig,
    ) -> None:
        self.adapter, self.pool_t, self.groups_t, self.config = adapter, pool_t, groups_t, config
        self.val_rows, self.groups = val_rows, groups
        self.pairs = sample_pairs(
            val_rows,
            groups,
            pool.shape[1],
            replace(config, same_group_positives="off"),
            np.random.default_rng([config.seed, 1]),
        )  # fixed across epochs
        self.ref = np.ascontiguousarray(pool[:, ref_view])  # (N, D)
        self.can_knn = labels is not None and len(val_rows) > 0
        self.labels = labels if labels is not None else np.full(len(pool), -1, dtype=np.int64)
        self.baselines: dict[str, float] = {}
        if self.can_knn:
            std = (self.ref - adapter.mean.cpu().numpy()) / adapter.std.cpu().numpy()
            self.baselines = {
                "raw": self._knn(l2_normalize(self.ref)),
                "standardized": self._knn(l2_normalize(std)),
            }

    def _knn(self, vectors: np.ndarray) -> float:
        return knn_precision(vectors, self.labels, self.groups, self.val_rows, self.config.knn_k)

    def __call__(self) -> dict[str, float]:
        self.adapter.eval()
        out: dict[str, float] = {}
        with torch.no_grad():
            if len(self.val_rows) >= 2:
                out["val_loss"] = _pool_loss(
                    self.adapter, self.pool_t, self.pairs, self.groups_t, self.config
                )
            if self.can_knn:
                out["knn_adapted"] = self._knn(to_vectors(self.ref, self.adapter))
        return out
