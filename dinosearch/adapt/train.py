"""Train a DomainAdapter on an image set and save it: cached backbone views (or fresh ones, ``online``).

The run: views of every image (``views``) → a train/val split by group (``pairs``) →
``fit.fit_adapter``, the loop → the best epoch's adapter, history and metrics in the adapter folder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dinosearch.adapt.adapter import DomainAdapter, save_adapter
from dinosearch.adapt.config import TrainConfig
from dinosearch.adapt.fit import Fit, fit_adapter
from dinosearch.adapt.online import online_epoch
from dinosearch.adapt.pairs import split_by_group
from dinosearch.adapt.view_cache import compute_views
from dinosearch.backbones import Backbone
from dinosearch.core.groups import value_codes
from dinosearch.core.lock import writing
from dinosearch.core.metrics import join_labels
from dinosearch.features.folder import FeatureSet, load_features
from dinosearch.inputs.records import load_records, records_fingerprint


@dataclass
class TrainResult:
    adapter: DomainAdapter  # the best epoch's weights, saved in ``folder``, eval mode
    folder: Path
    history: list[dict[str, Any]]  # one entry per epoch; epoch 0 is before training
    metrics: dict[str, Any]
    summary: str  # one line
    skipped: pd.DataFrame  # path, reason: unreadable images left out


def _codes(records: pd.DataFrame, column: str | None) -> np.ndarray | None:
    if column is None or column not in records.columns:
        return None
    values = records[column].map(_hashable)
    return value_codes(values)[0]  # missing → groups.MISSING


def _hashable(value: object) -> object:
    """A list value (list-typed Parquet column) as its ``"a|b"`` text: coded like that string."""
    return join_labels(value) if isinstance(value, list | tuple | np.ndarray) else value


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


def train_adapter(
    records: pd.DataFrame | str | Path,
    backbone: Backbone,
    out_dir: str | Path,
    config: TrainConfig = TrainConfig(),  # noqa: B008 (frozen)
    *,
    clean_features: FeatureSet | str | Path | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
    record: dict[str, Any] | None = None,
) -> TrainResult:
    """Train an adapter for ``backbone`` on ``records``; save the best epoch's to ``out_dir``.

    Args:
        records: images (``inputs.records.load_records``, or the folder/manifest to load them
            from), with ``config.group_column`` and ``config.label_column`` used when present.
        backbone: the frozen backbone whose features the adapter takes.
        out_dir: adapter folder to write (adapter.safetensors, adapter.json, history.json).
        config: see ``TrainConfig``.
        clean_features: a ``dinosearch embed`` output of these images (or its folder), reused as
            the clean view.
        record: the job's settings (``core.config.job_record``), kept in adapter.json.
        cache_dir: view cache root (default ``view_cache.default_cache_dir()``).
        progress: show progress bars.

    Raises:
        ValueError: a bad config, too few usable images, or ``clean_features`` of another backbone.
    """
    with writing(Path(out_dir), "train"):  # one trainer per adapter folder
        start = time.perf_counter()
        if not isinstance(records, pd.DataFrame):
            records, _ = load_records(records)
        if clean_features is not None and not isinstance(clean_features, FeatureSet):
            clean_features = load_features(clean_features)
        data, fit = _fit(records, backbone, config, clean_features, cache_dir, progress)
        metrics = _metrics(fit, config, time.perf_counter() - start)
        return _save(data, fit, backbone, Path(out_dir), config, metrics, record)


def _fit(
    records: pd.DataFrame,
    backbone: Backbone,
    config: TrainConfig,
    clean_features: FeatureSet | None,
    cache_dir: Path | None,
    progress: bool,
) -> tuple[_Data, Fit]:
    """Compute (or reuse) the training views of ``records``, then fit the adapter on them."""
    device = next(backbone.parameters()).device
    data = _prepare(
        records,
        backbone,
        config,
        seed=config.seed,
        cache_dir=cache_dir,
        clean_features=clean_features,
        batch_size=config.batch_size,
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
        online_epoch=online_epoch(
            backbone, data.records, data.train_rows, data.groups, config, progress
        )
        if config.online
        else None,
    )
    return data, fit


def _save(
    data: _Data,
    fit: Fit,
    backbone: Backbone,
    out: Path,
    config: TrainConfig,
    metrics: dict[str, Any],
    record: dict[str, Any] | None,
) -> TrainResult:
    """Write the fitted adapter (with its data info, metrics and history) to ``out``."""
    info = _data_info(data, config)
    fingerprint = save_adapter(
        fit.adapter,
        out,
        backbone_fingerprint=backbone.fingerprint,
        train_config=config.to_dict(),
        data=info,
        metrics=metrics,
        backbone_info=backbone.info(),
        extra={"history.json": {"history": fit.history}},
        config=record,
    )
    return TrainResult(
        fit.adapter,
        out,
        fit.history,
        metrics,
        _summary(fingerprint, fit.adapter, config, info, metrics, out),
        data.skipped,
    )


def _metrics(fit: Fit, config: TrainConfig, seconds: float) -> dict[str, Any]:
    """adapter.json's ``metrics``: the best epoch's losses and val kNN precision against baselines."""
    first, best = fit.history[0], fit.history[fit.best_epoch]
    knn = None
    if "knn_adapted" in first:
        knn = {**fit.knn_baselines, "initial": first["knn_adapted"], "adapted": best["knn_adapted"]}
    return {
        "best_epoch": fit.best_epoch,
        "val_loss": best.get("val_loss"),
        "val_loss_initial": first.get("val_loss"),
        "train_loss": best.get("train_loss"),
        f"knn_precision@{config.knn_k}": knn,
        "seconds": round(seconds, 2),
    }


def _data_info(data: _Data, config: TrainConfig) -> dict[str, Any]:
    """adapter.json's ``data``: which images, how they were split, where the views came from."""
    recs = data.records
    return {
        "count": len(recs),
        "images": records_fingerprint(recs),
        "train": len(data.train_rows),
        "val": len(data.val_rows),
        "skipped": len(data.skipped),
        "split_by": config.group_column if config.group_column in recs.columns else "image",
        "view_sources": data.sources,
    }


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
