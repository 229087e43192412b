"""The main job in one call: embed → raw index → train adapter → adapted index → A/B report.

Layout under ``root``: ``runs/<name>/{features,adapter,cache}``, ``indexes/<name>-raw``,
``indexes/<name>-adapted``, ``reports/<name>/``. Every stage is reused when what made it still
matches (backbone fingerprint, image set, features checksum, training config), so a re-run only
redoes what changed. One backbone instance serves embedding and view extraction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dinosearch.app.launch import launch_command
from dinosearch.backbones import Backbone
from dinosearch.core.columns import Role, resolve_roles
from dinosearch.core.storage import read_json, write_json
from dinosearch.evaluate.indexes import evaluate_indexes
from dinosearch.features.folder import FeatureSet, embed_to_folder, load_features
from dinosearch.inputs.records import records_fingerprint


@dataclass(frozen=True)
class DemoConfig:
    """What the demo builds; ``train`` holds overrides of ``TrainConfig.for_demo()`` (views, epochs, …)."""

    images: str
    name: str
    root: Path = Path(".")
    train: dict[str, Any] = field(default_factory=dict)
    train_images: int | None = 1000  # view extraction costs K backbone passes per image: cap it
    label_column: str | None = None  # None: the core.columns default when present
    group_column: str | None = None
    stratify_column: str | None = None
    ks: tuple[int, ...] = (1, 5, 10, 20)
    n_boot: int = 1000
    batch_size: int | None = None  # images per backbone forward (None: by device)
    num_workers: int | None = None
    progress: bool = True


@dataclass
class DemoPaths:
    features: Path
    adapter: Path
    cache: Path
    raw_index: Path
    adapted_index: Path
    report: Path

    @classmethod
    def of(cls, root: Path, name: str) -> DemoPaths:
        run = root / "runs" / name
        return cls(
            run / "features",
            run / "adapter",
            run / "cache",
            root / "indexes" / f"{name}-raw",
            root / "indexes" / f"{name}-adapted",
            root / "reports" / name,
        )


def run_demo(config: DemoConfig, backbone: Backbone, log: Callable[[str], None] = print) -> str:
    """Build or reuse every stage, evaluate, write the report; → the summary text to print."""
    from dinosearch.inputs.records import load_records

    paths = DemoPaths.of(Path(config.root), config.name)
    records, passed_over = load_records(config.images)
    if backbone.random_init:
        log(f"note: {backbone.name} is randomly initialised: this run measures an untrained model")
    fs = _features(records, passed_over, backbone, paths.features, config, log)
    columns = resolve_roles(
        fs.metadata.columns,
        label=config.label_column,
        group=config.group_column,
        stratify=config.stratify_column,
    )
    _index(fs, paths.features, paths.raw_index, None, None, log)
    adapter_fp = _adapter(fs, backbone, paths, config, columns, log)
    _index(fs, paths.features, paths.adapted_index, paths.adapter, adapter_fp, log)
    log("evaluating raw vs adapted …")
    _, _, text = evaluate_indexes(
        paths.raw_index,
        paths.adapted_index,
        paths.report,
        label_column=columns["label"] or "",
        group_column=columns["group"] or "",
        stratify_column=columns["stratify"] or "",
        ks=list(config.ks),
        n_boot=config.n_boot,
        seed=int(config.train.get("seed", 0)),
    )
    return (
        f"{text}\n\nindexes: {paths.raw_index} (raw), {paths.adapted_index} (adapted)\n"
        f"open the app on them:\n  {launch_command(paths.raw_index.parent)}"
    )


def _features(
    records: pd.DataFrame,
    passed_over: pd.DataFrame,
    backbone: Backbone,
    folder: Path,
    config: DemoConfig,
    log: Callable[[str], None],
) -> FeatureSet:
    try:
        fs = load_features(folder)
        skipped = set(pd.read_csv(folder / "skipped.csv")["path"].astype(str))
        kept = records[~records["path"].astype(str).isin(skipped)]
        if fs.fingerprint == backbone.fingerprint and fs.manifest["images"] == records_fingerprint(
            kept
        ):
            log(f"reusing features {folder} ({len(fs.metadata)} images, {fs.fingerprint})")
            return fs
    except (FileNotFoundError, ValueError, KeyError):
        pass
    log(f"embedding {len(records)} images with {backbone.fingerprint} → {folder}")
    return embed_to_folder(
        records,
        backbone,
        folder,
        pre_skipped=passed_over,
        batch_size=config.batch_size,
        num_workers=config.num_workers,
        source=str(config.images),
        progress=config.progress,
    )


def _index(
    fs: FeatureSet,
    features: Path,
    out: Path,
    adapter: Path | None,
    adapter_fp: str | None,
    log: Callable[[str], None],
) -> None:
    from dinosearch.index import build_index, open_index

    try:
        handle = open_index(out, verify=False)
        made_from = handle.manifest["features"]
        same = (
            made_from["path"] == str(features.resolve())
            and made_from["checksum"] == fs.manifest["checksums"]["features.npy"]
            and (handle.manifest.get("adapter") or {}).get("fingerprint") == adapter_fp
        )
        if same:
            log(f"reusing index {out} (version {handle.version})")
            return
    except (FileNotFoundError, ValueError, KeyError):
        pass
    log(f"building index {out}" + (f" with adapter {adapter_fp}" if adapter_fp else " (raw)"))
    build_index(features, out, adapter_dir=adapter)


def training_subset(
    metadata: pd.DataFrame, limit: int | None, group: str | None, seed: int
) -> pd.DataFrame:
    """At most ``limit`` rows, whole groups drawn at random (seeded); all rows when fewer."""
    if limit is None or len(metadata) <= limit:
        return metadata
    keys = metadata[group].astype(str) if group else metadata["id"].astype(str)
    order = np.random.default_rng(seed).permutation(keys.unique())
    sizes = keys.value_counts().reindex(order).to_numpy()
    chosen = set(order[: max(1, int(np.searchsorted(np.cumsum(sizes), limit, side="right")))])
    return metadata[keys.isin(chosen).to_numpy()].reset_index(drop=True)


def _adapter(
    fs: FeatureSet,
    backbone: Backbone,
    paths: DemoPaths,
    config: DemoConfig,
    columns: dict[Role, str | None],
    log: Callable[[str], None],
) -> str:
    from dinosearch.adapt.adapter import read_adapter_info
    from dinosearch.adapt.config import TrainConfig
    from dinosearch.adapt.train import train_adapter

    train_config = TrainConfig.for_demo(
        **{**config.train, "group_column": columns["group"], "label_column": columns["label"]}
    )
    records = training_subset(fs.metadata, config.train_images, columns["group"], train_config.seed)
    stamp = {
        "backbone": backbone.fingerprint,
        "train_config": train_config.to_dict(),
        "images": records_fingerprint(records),
        "features": fs.manifest["checksums"]["features.npy"],
    }
    stamp_file = paths.adapter.parent / "adapter_stamp.json"
    try:
        old = read_json(stamp_file)
        if (
            old["made_from"] == stamp
            and read_adapter_info(paths.adapter)["fingerprint"] == old["fingerprint"]
        ):
            log(f"reusing adapter {paths.adapter} ({old['fingerprint']})")
            return str(old["fingerprint"])
    except (FileNotFoundError, ValueError, KeyError):
        pass
    log(
        f"training an adapter on {len(records)} images (K={train_config.views} views"
        f"{' + clean view' if train_config.clean_view else ''}, {train_config.epochs} epochs)"
    )
    result = train_adapter(
        records,
        backbone,
        paths.adapter,
        train_config,
        clean_features=fs,
        cache_dir=paths.cache,
        progress=config.progress,
    )
    log(result.summary)
    fingerprint = read_adapter_info(paths.adapter)["fingerprint"]
    write_json(stamp_file, {"fingerprint": fingerprint, "made_from": stamp})
    return str(fingerprint)
