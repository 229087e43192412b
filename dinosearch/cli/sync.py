"""``dinosearch sync``: keep a features folder and its indexes in step with a DICOMweb archive."""

from __future__ import annotations

import argparse

from dinosearch.core.config import add_config_arguments, config_from_args
from dinosearch.sync.config import SyncConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = (
        "credentials: DINOSEARCH_DICOMWEB_TOKEN, or DINOSEARCH_DICOMWEB_USER and "
        "DINOSEARCH_DICOMWEB_PASSWORD; never in the URL"
    )
    add_config_arguments(p, SyncConfig)


def run(args: argparse.Namespace) -> int:
    from dinosearch.sync.archive import SyncResult, sync_archive

    config = config_from_args(SyncConfig, args)

    def report(result: SyncResult) -> None:
        for rid in result.added:
            print(f"added {rid}")
        for rid in result.removed:
            print(f"removed {rid}")
        published = ", ".join(f"{k} → {v}" for k, v in result.published.items()) or "nothing"
        print(
            f"sync: {len(result.added)} added, {len(result.removed)} removed, "
            f"{result.skipped} skipped; published {published}",
            flush=True,
        )

    sync_archive(config, report)
    return 0
