"""``dinosearch train``: images → cached augmented views → a domain adapter folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from dinosearch.adapt.config import TrainJobConfig, train_part
from dinosearch.core.config import add_config_arguments, config_from_args, job_record


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, TrainJobConfig)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(TrainJobConfig, args)
    from dinosearch.adapt.train import train_adapter
    from dinosearch.cli.common import backbone_from_config
    from dinosearch.core.warnings import untrained_note
    from dinosearch.features.folder import load_features
    from dinosearch.inputs.records import load_records

    records, _ = load_records(config.images, path_column=config.path_column)
    if config.limit is not None:
        records = records.iloc[: config.limit].reset_index(drop=True)
    backbone = backbone_from_config(config)
    if backbone.random_init:
        print(untrained_note(backbone.fingerprint))
    clean = load_features(config.features) if config.features else None
    result = train_adapter(
        records,
        backbone,
        config.out,
        train_part(config),
        clean_features=clean,
        cache_dir=Path(config.cache_dir) if config.cache_dir else None,
        progress=config.progress,
        record=job_record("train", config),
    )
    for path, reason in result.skipped.itertuples(index=False):
        print(f"skipped {path}: {reason}")
    print(result.summary)
    return 0
