"""``dinosearch index``: a features folder (+ adapter) → a published FAISS index version."""

from __future__ import annotations

import argparse
import time

from dinosearch.core.config import add_config_arguments, config_from_args, job_record
from dinosearch.index.config import IndexConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, IndexConfig)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(IndexConfig, args)
    from dinosearch.core.warnings import untrained_note
    from dinosearch.index import build_index, current_version

    before = current_version(config.out) if config.append else None
    start = time.perf_counter()
    handle = build_index(
        config.features,
        config.out,
        adapter_dir=config.adapter,
        index_type=config.index_type,
        memory_budget_gb=config.memory_budget_gb,
        append=config.append,
        skip_existing=config.skip_existing,
        params=config.params() or None,
        use_gpu=None if config.gpu else False,
        keep=config.keep,
        config=job_record("index", config),
    )
    m = handle.manifest
    if handle.random_init:
        fp = m["backbone"]["fingerprint"]
        print(untrained_note(fp, "these vectors are untrained and search results are not meaningful"))  # fmt: skip
    adapter = m["adapter"]["fingerprint"] if m["adapter"] else "none (raw)"
    if config.append:  # --skip-existing with nothing new leaves the live version as it was
        added = m["appended"][-1].get("added") if handle.version != before else 0
        print(f"appended {added} new vectors from {config.features}")
    print(
        f"indexed {handle.count} vectors ({handle.dim}-d, {m['index_type']} {m['params']}, "
        f"built on {m['built_on']}, adapter {adapter}) in {time.perf_counter() - start:.1f}s "
        f"→ {config.out} version {handle.version}"
    )
    return 0
