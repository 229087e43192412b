"""``dinosearch eval``: A/B retrieval metrics of a raw vs an adapted index of the same images."""

from __future__ import annotations

import argparse
from pathlib import Path

from dinosearch.core.config import add_config_arguments, config_from_args, job_record
from dinosearch.evaluate.config import EvalConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, EvalConfig)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(EvalConfig, args)
    from dinosearch.evaluate.indexes import evaluate_indexes

    out = (
        config.out
        or Path("reports")
        / f"{Path(config.raw).resolve().name}_vs_{Path(config.adapted).resolve().name}"
    )
    result = evaluate_indexes(
        config.raw,
        config.adapted,
        out,
        label_column=config.label_column,
        group_column=config.group_column,
        stratify_column=config.stratify_column,
        ks=list(config.k),
        queries=config.queries,
        n_boot=config.n_boot,
        seed=config.seed,
        whiten_dim=config.whiten_dim,
        features=config.features,
        adapter=config.adapter,
        config=job_record("eval", config),
    )
    print(result.text)
    return 0
