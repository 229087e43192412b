"""The main job in one call: embed → raw index → train adapter → adapted index → A/B report.

Layout under ``root``: ``runs/<name>/{features,adapter,cache}``, ``indexes/<name>-raw``,
``indexes/<name>-adapted``, ``reports/<name>/``. Every stage is reused when what made it still
matches (backbone fingerprint, image set, features checksum, training config), so a re-run only
redoes what changed. One backbone instance serves embedding and view extraction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from dinosearch.adapt.config import TrainConfig
from dinosearch.backbones.config import BackboneSettings, Pooling, RuntimeSettings
from dinosearch.core.config import like, opt
from dinosearch.evaluate.config import EvalSettings

if TYPE_CHECKING:
    import pandas as pd

    from dinosearch.backbones import Backbone
    from dinosearch.core.columns import Role
    from dinosearch.features.folder import FeatureSet

_T = "training"


@dataclass(frozen=True)
class DemoConfig(EvalSettings, TrainConfig, BackboneSettings, RuntimeSettings):
    """What the demo builds: every ``dinosearch train`` and ``eval`` setting, plus where.

    The demo departs from ``TrainConfig``'s defaults here, and only here (measured on 600 dev
    X-rays, untrained ViT-S/14; scripts/benchmark_quality.py). It indexes and evaluates the very
    images it trains on, label-free, and its A/B report is the check, so it needs no held-out split.
    """

    images: str | None = opt("labelled image folder or CSV/Parquet manifest (default: the bundled sample of 320 chest X-rays, dinosearch/sample)", default=None)  # fmt: skip
    name: str | None = opt("run name (default: from --images)", default=None)
    root: str = opt("where runs/, indexes/ and reports/ live", default=".")
    # 2 views + the clean one from `embed`: half the backbone passes of K=4
    views: int = opt("K augmented views cached per image", default=2, group=_T)
    # cheap on cached views; more steps helped at batch 64
    epochs: int = opt("cheap: epochs run on cached features", default=150, group=_T)
    # precision@10 0.360 with all images vs 0.338 holding out 15%
    val_fraction: float = opt("images held out (by group) for a val loss and best-epoch choice; 0 trains on all (the A/B report is the check)", default=0.0, group=_T)  # fmt: skip
    train_images: int = opt("train on at most this many images (whole groups); 0 = all. View extraction costs K backbone passes per training image", default=1000, group=_T)  # fmt: skip
    # the mean of the patch tokens, not CLS: the raw maps are then an exact split of the score and
    # the adapted ones account for ≥ 99 % of it; precision@10 on the sample holds (docs/explain.md)
    pooling: Pooling = like(BackboneSettings, "pooling", default="mean")

    def __post_init__(self) -> None:
        self.check_training()
        EvalSettings.__post_init__(self)
        if self.train_images < 0:
            raise ValueError(f"--train-images {self.train_images}: must be ≥ 0 (0 = all)")

    def train_config(self, **columns: str | None) -> TrainConfig:
        """The demo's ``TrainConfig`` (group/label columns as resolved on the data)."""
        from dinosearch.core.config import project

        return project(TrainConfig, self, **columns)


def default_name(images: str) -> str:
    path = Path(images).resolve()
    return (path.parent.name if path.is_file() else path.name) or "demo"


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
    from dinosearch.app.launch import launch_command
    from dinosearch.core.columns import resolve_roles
    from dinosearch.core.config import job_record
    from dinosearch.core.warnings import untrained_note
    from dinosearch.evaluate.indexes import evaluate_indexes
    from dinosearch.inputs.records import load_records
    from dinosearch.inputs.sample import sample_manifest

    images = config.images or str(sample_manifest())
    config = replace(config, images=images, name=config.name or default_name(images))
    paths = DemoPaths.of(Path(config.root), str(config.name))
    records, passed_over = load_records(images)
    if backbone.random_init:
        log(untrained_note(backbone.fingerprint, "this run measures an untrained model"))
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
    result = evaluate_indexes(
        paths.raw_index,
        paths.adapted_index,
        paths.report,
        label_column=columns["label"] or "",
        group_column=columns["group"] or "",
        stratify_column=columns["stratify"] or "",
        ks=list(config.k),
        n_boot=config.n_boot,
        seed=config.seed,
        config=job_record("demo", config),
    )
    return (
        f"{result.text}\n\nindexes: {paths.raw_index} (raw), {paths.adapted_index} (adapted)\n"
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
    import pandas as pd

    from dinosearch.features.folder import embed_to_folder, load_features
    from dinosearch.inputs.records import records_fingerprint

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
    import numpy as np

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
    from dinosearch.adapt.train import train_adapter
    from dinosearch.core.storage import read_json, write_json
    from dinosearch.inputs.records import records_fingerprint

    train_config = config.train_config(group_column=columns["group"], label_column=columns["label"])
    limit = config.train_images or None
    records = training_subset(fs.metadata, limit, columns["group"], train_config.seed)
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
    if train_config.views and not train_config.online:
        log(_views_note(records, backbone, paths.cache, train_config))
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


def _views_note(records: pd.DataFrame, backbone: Backbone, cache: Path, config: TrainConfig) -> str:
    """Whether training reuses the cached augmented views or must compute new ones (the slow part)."""
    from dinosearch.adapt.view_cache import views_cached

    k = config.views
    if views_cached(
        records,
        backbone,
        cache,
        preset=config.preset,
        views=k,
        seed=config.seed,
        hflip=config.hflip,
    ):
        return f"reusing the {k} cached views per image in {cache}"
    return (
        f"these settings need new views (K={k}, preset {config.preset}, seed {config.seed}): "
        f"{k} backbone passes per image, the slow part; retrains that keep them take seconds"
    )
