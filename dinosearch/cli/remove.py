"""``dinosearch remove``: erase rows (by id or filter) from indexes, their features and the view cache."""

from __future__ import annotations

import argparse

from dinosearch.core.config import add_config_arguments, config_from_args
from dinosearch.sync.remove_config import RemoveConfig


def _folders(text: str) -> list[str]:
    return [part for part in text.split(",") if part]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--index",
        action="extend",
        type=_folders,
        required=True,
        metavar="INDEX",
        help="index folder to remove the rows from (repeat, or comma-separate, for several)",
    )
    add_config_arguments(p, RemoveConfig)


def run(args: argparse.Namespace) -> int:
    from dinosearch.sync.erase import remove

    config = config_from_args(RemoveConfig, vars(args))
    result = remove(config)
    print(f"asked to remove {result.ids} ids")
    for folder, rows in result.features:
        print(f"features {folder}: {rows} rows dropped")
    for ix in result.indexes:
        how = f" ({ix.how})" if ix.how else ""
        version = f"version {ix.published} published" if ix.published else "no new version"
        gone = ", ".join(ix.deleted_versions) or "none"
        print(f"index {ix.path}: {ix.removed} rows removed{how}; {version}; deleted: {gone}")
    print(f"view cache: {len(result.cache_entries)} entries deleted")
    return 0
