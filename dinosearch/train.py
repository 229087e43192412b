"""Fit a DomainAdapter with InfoNCE on pairs of cached backbone views (or fresh ones, ``online``).

The loop: split images by group into train/val → standardise with the training features' mean/std →
each epoch one positive pair per training image (two of its views, or with ``same_group_positives``
two images of one patient) → AdamW, warm-up + cosine → val loss and kNN precision → best epoch kept.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from dinosearch.adapter import AdapterConfig, DomainAdapter, save_adapter
from dinosearch.augment import build_augment
from dinosearch.backbone import Backbone
from dinosearch.data import records_fingerprint
from dinosearch.embed import l2_normalize, to_vectors
from dinosearch.featurestore import FeatureSet
from dinosearch.losses import info_nce
from dinosearch.runtime import seed_everything
from dinosearch.storage import write_json
from dinosearch.views import compute_views, iter_fresh_pairs, view_seed

SameGroup = Literal["off", "mix", "only"]
Step = Callable[[torch.Tensor], None]


@dataclass(frozen=True)
class TrainConfig:
    """How to train an adapter; stored in adapter.json. CLI flags map one-to-one onto fields."""

    views: int = 4  # K augmented views cached per image: K(K-1)/2 pairs for K backbone passes
    clean_view: bool = True  # the eval view joins the pool (free when embed features exist)
    epochs: int = 60  # cheap on cached features: an epoch is a few small matmuls per batch
    batch_size: int = 64  # pairs per step (2*batch-2 negatives each); 64 beat 256 on 600 CXR
    lr: float = 1e-3
    weight_decay: float = 0.05  # AdamW, on weight matrices only
    warmup: int = 3  # epochs of linear warm-up, then cosine decay to 0
    temperature: float = 0.1
    preset: str = "xray"  # augment.PRESETS
    hflip: bool | None = None  # None: the preset's default (off for xray)
    bottleneck: int = 512
    dropout: float = 0.1
    residual_init: float = 0.1
    seed: int = 0  # views, split, pair sampling, init and dropout
    val_fraction: float = 0.15  # images held out, whole groups at a time; 0: no validation
    group_column: str | None = "patient_id"  # when absent, each image is its own group
    label_column: str | None = "label"  # only for val kNN precision; ignored when absent
    same_group_positives: SameGroup = "off"  # MICLe: "mix" or "only" pair 2 images of a group
    group_pair_prob: float = 0.5  # in "mix": chance an image with a group partner uses it
    select_by: Literal["loss", "knn"] = "loss"  # best epoch: val loss (label-free) or kNN
    knn_k: int = 10
    online: bool = False  # fresh views through the backbone every step (GPU, huge data)
    extract_batch_size: int = 32  # images per backbone forward
    num_workers: int | None = None  # image-decoding workers (None: by device)

    def __post_init__(self) -> None:
        if not self.online and self.views + self.clean_view < 2:
            raise ValueError(f"--views {self.views} gives under 2 views per image; use --views ≥ 2")
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError(
                f"--epochs {self.epochs} must be ≥ 1, batch size {self.batch_size} ≥ 2"
            )
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"--val-fraction {self.val_fraction} must be in [0, 1)")
        if self.same_group_positives not in ("off", "mix", "only"):
            raise ValueError(
                f"same_group_positives {self.same_group_positives!r}: off, mix or only"
            )
        if self.online and self.same_group_positives != "off":
            raise ValueError("--online trains on view pairs only; drop --same-group-positives")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class TrainResult:
    adapter: DomainAdapter  # the best epoch's weights, saved in ``folder``, eval mode
    folder: Path
    history: list[dict[str, Any]]  # one entry per epoch; epoch 0 is before training
    metrics: dict[str, Any]
    summary: str  # one line
    skipped: pd.DataFrame  # path, reason: unreadable images left out


def split_by_group(
    groups: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, val rows): whole groups, shuffled by ``seed``, until ``val_fraction`` is held out."""
    unique, codes = np.unique(groups, return_inverse=True)
    order = np.random.default_rng(seed).permutation(len(unique))
    sizes = np.bincount(codes, minlength=len(unique))[order]
    n_val_groups = int(np.searchsorted(np.cumsum(sizes), val_fraction * len(groups)))
    is_val = np.zeros(len(unique), dtype=bool)
    is_val[order[:n_val_groups]] = True
    return np.flatnonzero(~is_val[codes]), np.flatnonzero(is_val[codes])


def knn_precision(
    vectors: np.ndarray, labels: np.ndarray, groups: np.ndarray, queries: np.ndarray, k: int = 10
) -> float:
    """Mean precision@k of ``queries`` (rows) among all (N, D) unit ``vectors``, skipping the query's
    own group; queries without a label (code -1) are left out."""
    queries = queries[labels[queries] >= 0]
    if len(queries) == 0:
        return float("nan")
    sims = vectors[queries] @ vectors.T  # (q, N)
    sims[groups[queries][:, None] == groups[None, :]] = -np.inf
    k = min(k, vectors.shape[0] - 1)
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    return float((labels[top] == labels[queries][:, None]).mean())


def _codes(records: pd.DataFrame, column: str | None) -> np.ndarray | None:
    if column is None or column not in records.columns:
        return None
    return pd.factorize(records[column], use_na_sentinel=True)[0].astype(np.int64)  # NaN → -1


def _partners(groups: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each of ``rows``, a random other row of its group among ``rows`` (-1 if none)."""
    out = np.full(len(rows), -1, dtype=np.int64)
    order = np.argsort(groups[rows], kind="stable")
    sorted_groups = groups[rows][order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    for start, size in zip(starts, np.diff(np.r_[starts, len(rows)]), strict=True):
        if size > 1:
            shift = rng.integers(1, size, size=size)  # never 0: never the image itself
            out[order[start : start + size]] = rows[order[start + (np.arange(size) + shift) % size]]
    return out


def sample_pairs(
    rows: np.ndarray,
    groups: np.ndarray,
    num_views: int,
    config: TrainConfig,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One positive pair per image of ``rows``, shuffled: (rows, views, partner rows, partner views).

    View pairs take two different views of one image; group pairs (``same_group_positives``) take
    any view of another image of the same group. In "only" mode images without a partner drop out.
    """
    rows = rows[rng.permutation(len(rows))]
    va = rng.integers(0, num_views, size=len(rows))
    vb = (va + rng.integers(1, max(num_views, 2), size=len(rows))) % num_views
    partner = rows.copy()
    if config.same_group_positives != "off":
        other = _partners(groups, rows, rng)
        use = other >= 0
        if config.same_group_positives == "mix":
            use &= rng.random(len(rows)) < config.group_pair_prob
        partner[use] = other[use]
        vb[use] = rng.integers(0, num_views, size=int(use.sum()))
        if config.same_group_positives == "only":
            rows, va, partner, vb = rows[use], va[use], partner[use], vb[use]
    return rows, va, partner, vb


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
    for idx in _batches(len(rows), config.batch_size):
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

    decay = [p for p in adapter.parameters() if p.ndim >= 2]
    no_decay = [p for p in adapter.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.lr,
    )
    steps = (
        math.ceil(len(train_rows) / config.batch_size)
        if online_epoch
        else len(_batches(len(train_rows), config.batch_size))
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

    val_pairs = sample_pairs(
        val_rows,
        groups,
        num_views,
        replace(config, same_group_positives="off"),
        np.random.default_rng([config.seed, 1]),
    )  # fixed across epochs
    ref = np.ascontiguousarray(pool[:, ref_view])  # (N, D)
    can_knn = labels is not None and len(val_rows) > 0
    labels = labels if labels is not None else np.full(n, -1, dtype=np.int64)
    baselines: dict[str, float] = {}
    if can_knn:
        std = (ref - adapter.mean.cpu().numpy()) / adapter.std.cpu().numpy()
        baselines = {
            "raw": knn_precision(l2_normalize(ref), labels, groups, val_rows, config.knn_k),
            "standardized": knn_precision(
                l2_normalize(std), labels, groups, val_rows, config.knn_k
            ),
        }

    def evaluate() -> dict[str, float]:
        adapter.eval()
        out: dict[str, float] = {}
        with torch.no_grad():
            if len(val_rows) >= 2:
                out["val_loss"] = _pool_loss(adapter, pool_t, val_pairs, groups_t, config)
            if can_knn:
                vectors = to_vectors(ref, adapter)
                out["knn_adapted"] = knn_precision(vectors, labels, groups, val_rows, config.knn_k)
        return out

    start = time.perf_counter()
    history: list[dict[str, Any]] = [{"epoch": 0, "train_loss": None, **evaluate(), "seconds": 0.0}]
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
        entry = {
            "epoch": epoch,
            "train_loss": train_loss,
            **evaluate(),
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - start,
        }
        history.append(entry)
        if config.select_by == "knn" and can_knn:
            score = -entry["knn_adapted"]
        else:
            score = entry.get("val_loss", -epoch)  # without validation the last epoch wins
        if score < best_score:
            best_state, best_score, best_epoch = copy.deepcopy(adapter.state_dict()), score, epoch
        bar.set_postfix(loss=f"{train_loss:.3f}", val=f"{entry.get('val_loss', math.nan):.3f}")
    adapter.load_state_dict(best_state)
    return Fit(adapter.eval(), history, best_epoch, baselines)


@dataclass
class _Data:
    pool: np.ndarray  # (N, P, D); online: augmented views of val rows only, clean view last
    records: pd.DataFrame  # N rows aligned with pool
    skipped: pd.DataFrame
    sources: dict[str, str]
    groups: np.ndarray  # (N,) group codes (each image its own group without a group column)
    train_rows: np.ndarray
    val_rows: np.ndarray
    ref_view: int  # pool view embedded for kNN (the clean one when present)


def _prepare(records: pd.DataFrame, backbone: Backbone, config: TrainConfig, **kw: Any) -> _Data:
    """Cached views of every image; online: the clean view, plus 2 augmented views of val images."""
    if config.same_group_positives != "off" and config.group_column not in records.columns:
        raise ValueError(
            f"--same-group-positives needs a group column; {config.group_column!r} "
            f"is not among the columns {list(records.columns)}"
        )
    vs = compute_views(
        records,
        backbone,
        preset=config.preset,
        hflip=config.hflip,
        views=0 if config.online else config.views,
        clean=config.clean_view or config.online,
        **kw,
    )
    recs, pool = vs.records, vs.views
    codes = _codes(recs, config.group_column)
    groups = np.arange(len(recs)) if codes is None else codes
    train_rows, val_rows = split_by_group(groups, config.val_fraction, config.seed)
    if config.online and len(val_rows):  # val pairs need fixed views: two per val image, cached
        val = compute_views(
            recs.iloc[val_rows],
            backbone,
            preset=config.preset,
            hflip=config.hflip,
            views=2,
            clean=False,
            **kw,
        )
        full = np.full((len(recs), 3, pool.shape[-1]), np.nan, dtype=np.float32)
        full[:, 2] = pool[:, 0]
        val_rows = val_rows[np.isin(recs["id"].iloc[val_rows], val.records["id"])]
        full[val_rows, :2] = val.views
        pool = full
    if len(train_rows) < 2:
        raise ValueError(
            f"only {len(train_rows)} training images after the split; "
            "add images or lower --val-fraction"
        )
    ref = pool.shape[1] - 1 if (config.clean_view or config.online) else 0
    return _Data(pool, recs, vs.skipped, vs.sources, groups, train_rows, val_rows, ref)


def _online(
    backbone: Backbone, data: _Data, config: TrainConfig, progress: bool
) -> Callable[[DomainAdapter, int, Step], float]:
    """An epoch on two fresh augmented views per training image through the backbone."""
    augment = build_augment(config.preset, backbone.preprocess, hflip=config.hflip)
    groups = torch.from_numpy(data.groups)
    threads = torch.get_num_threads()  # for the backbone; the adapter runs on one (see fit_adapter)

    def epoch_fn(adapter: DomainAdapter, epoch: int, step: Step) -> float:
        rng = np.random.default_rng([config.seed, 2, epoch])
        rows = data.train_rows[rng.permutation(len(data.train_rows))]
        paths = data.records["path"].iloc[rows].astype(str).tolist()
        fresh = iter_fresh_pairs(
            paths,
            backbone,
            augment,
            seed=view_seed(config.seed, 1000 + epoch),
            batch_size=config.batch_size,
            num_workers=config.num_workers,
            threads=threads,
        )
        total, count = 0.0, 0
        steps = math.ceil(len(rows) / config.batch_size)
        for pos, feats in tqdm(
            fresh, desc=f"epoch {epoch}", total=steps, leave=False, disable=not progress
        ):  # feats (b, 2, D)
            g = groups[torch.from_numpy(rows[pos])].to(feats.device)
            loss = info_nce(
                adapter(feats[:, 0]), adapter(feats[:, 1]), config.temperature, groups=g
            )
            step(loss)
            total, count = total + float(loss.detach()) * len(pos), count + len(pos)
        return total / max(count, 1)

    return epoch_fn


def train_adapter(
    records: pd.DataFrame,
    backbone: Backbone,
    out_dir: str | Path,
    config: TrainConfig = TrainConfig(),
    *,
    clean_features: FeatureSet | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train an adapter for ``backbone`` on ``records``; save the best epoch's to ``out_dir``.

    Args:
        records: images (``data.load_records``), with ``config.group_column`` and
            ``config.label_column`` used when present.
        backbone: the frozen backbone whose features the adapter takes.
        out_dir: adapter folder to write (adapter.safetensors, adapter.json, history.json).
        config: see ``TrainConfig``.
        clean_features: a ``dinosearch embed`` output of these images, reused as the clean view.
        cache_dir: view cache root (default ``views.default_cache_dir()``).
        progress: show progress bars.

    Raises:
        ValueError: a bad config, too few usable images, or ``clean_features`` of another backbone.
    """
    start = time.perf_counter()
    device = next(backbone.parameters()).device
    data = _prepare(
        records,
        backbone,
        config,
        seed=config.seed,
        cache_dir=cache_dir,
        clean_features=clean_features,
        batch_size=config.extract_batch_size,
        num_workers=config.num_workers,
        progress=progress,
    )
    labels = _codes(data.records, config.label_column)
    fit = fit_adapter(
        data.pool,
        data.train_rows,
        data.val_rows,
        config,
        groups=data.groups,
        labels=labels,
        ref_view=data.ref_view,
        device=device,
        progress=progress,
        online_epoch=_online(backbone, data, config, progress) if config.online else None,
    )
    first, best = fit.history[0], fit.history[fit.best_epoch]
    knn = None
    if "knn_adapted" in first:
        knn = {**fit.knn_baselines, "initial": first["knn_adapted"], "adapted": best["knn_adapted"]}
    metrics: dict[str, Any] = {
        "best_epoch": fit.best_epoch,
        "val_loss": best.get("val_loss"),
        "val_loss_initial": first.get("val_loss"),
        "train_loss": best.get("train_loss"),
        f"knn_precision@{config.knn_k}": knn,
        "seconds": round(time.perf_counter() - start, 2),
    }
    recs = data.records
    split_by = config.group_column if config.group_column in recs.columns else "image"
    info = {
        "count": len(recs),
        "images": records_fingerprint(recs),
        "train": len(data.train_rows),
        "val": len(data.val_rows),
        "skipped": len(data.skipped),
        "split_by": split_by,
        "view_sources": data.sources,
    }
    out = Path(out_dir)
    fingerprint = save_adapter(
        fit.adapter,
        out,
        backbone_fingerprint=backbone.fingerprint,
        train_config=config.to_dict(),
        data=info,
        metrics=metrics,
        backbone_info=backbone.info(),
    )
    write_json(out / "history.json", {"history": fit.history})
    return TrainResult(
        fit.adapter,
        out,
        fit.history,
        metrics,
        _summary(fingerprint, fit.adapter, config, info, metrics, out),
        data.skipped,
    )


def _summary(
    fingerprint: str,
    adapter: DomainAdapter,
    config: TrainConfig,
    data: dict[str, Any],
    metrics: dict[str, Any],
    out: Path,
) -> str:
    mode = "online" if config.online else f"K={config.views}{'+clean' if config.clean_view else ''}"
    text = (
        f"adapter {fingerprint} ({adapter.num_parameters() / 1e6:.2f}M params, {mode}): "
        f"{config.epochs} epochs on {data['train']} images ({data['val']} val by "
        f"{data['split_by']}), best epoch {metrics['best_epoch']}"
    )
    if metrics["val_loss"] is not None:
        text += f", val loss {metrics['val_loss_initial']:.3f} → {metrics['val_loss']:.3f}"
    knn = metrics[f"knn_precision@{config.knn_k}"]
    if knn:
        text += (
            f", val kNN p@{config.knn_k} raw {knn['raw']:.3f} / standardised "
            f"{knn['standardized']:.3f} / adapted {knn['adapted']:.3f}"
        )
    return text + f"; {metrics['seconds']:.0f}s → {out}"
