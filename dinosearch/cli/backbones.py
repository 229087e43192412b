"""``dinosearch backbones``: list the known backbone names."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.set_defaults()


def run(args: argparse.Namespace) -> int:
    from dinosearch.backbones import describe, list_backbones, list_families

    for name in list_backbones() + list_families():
        print(f"{name:22s} {describe(name)}")
    return 0
