"""``dinosearch demo``: the main job in one command (embed, index, train, index, evaluate).

Run again with other training flags (``--epochs 300``, ``--temperature 0.05``…), it reuses the
features, the raw index and the cached views, and retrains and re-indexes only the adapter.
"""

from __future__ import annotations

import argparse
import time

from dinosearch.core.config import add_config_arguments, config_from_args
from dinosearch.demo import DemoConfig, default_name

__all__ = ["add_arguments", "default_name", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, DemoConfig)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(DemoConfig, args)
    from dinosearch.cli.common import backbone_from_config
    from dinosearch.demo import run_demo

    start = time.perf_counter()
    text = run_demo(config, backbone_from_config(config))
    print(text)
    print(f"demo finished in {time.perf_counter() - start:.0f} s")
    return 0
