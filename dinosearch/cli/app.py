"""``dinosearch app``: open the search page (Streamlit) on an indexes folder, on this machine."""

from __future__ import annotations

import argparse

from dinosearch.app.config import AppConfig
from dinosearch.core.config import add_config_arguments, config_from_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, AppConfig)


def run(args: argparse.Namespace) -> int:
    from dinosearch.app.launch import run_app

    config = config_from_args(AppConfig, args)
    print(f"dinosearch app: http://{config.host}:{config.port} (Ctrl+C stops it)", flush=True)
    return run_app(config)
