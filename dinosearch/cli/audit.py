"""``dinosearch audit``: duplicates, near-duplicates, leaks, label conflicts and outliers of an index."""

from __future__ import annotations

import argparse

from dinosearch.audit.config import AuditConfig
from dinosearch.core.config import add_config_arguments, config_from_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, AuditConfig)


def run(args: argparse.Namespace) -> int:
    from dinosearch.audit.run import run_audit

    config = config_from_args(AuditConfig, args)
    result = run_audit(config)
    for name, cal in result.calibration.items():
        if cal.threshold is None:
            print(f"{name} threshold: not set")
            continue
        rec = cal.recall()
        print(
            f"{name} threshold: {cal.threshold:.4f} ({'given' if cal.given else 'calibrated'}; "
            f"planted-copy recall {'n/a' if rec is None else f'{rec:.3f}'}; "
            f"films whose nearest other film is above it: {cal.distinct_above})"
        )
    for note in result.notes:
        print(f"note: {note}")
    print(", ".join(f"{k.replace('_', ' ')} {v}" for k, v in result.counts.items()))
    print(f"report → {result.out} ({result.info['seconds']}s)")
    return 0
