"""``dinosearch serve``: the HTTP search service (FastAPI + uvicorn) over an indexes folder."""

from __future__ import annotations

import argparse
import sys

from dinosearch.core.config import add_config_arguments, config_from_args
from dinosearch.serve.config import ServeConfig, server_environment


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, ServeConfig)
    p.add_argument(
        "--hash-key",
        nargs="?",
        const="",
        default=None,
        metavar="KEY",
        help="print a key file line for KEY (or for a new random key, printed first) and exit",
    )


def run(args: argparse.Namespace) -> int:
    if args.hash_key is not None:
        from dinosearch.serve.keys import hash_key, new_key

        key = args.hash_key or new_key()
        if not args.hash_key:
            print(f"new API key (give it to the client, keep it secret): {key}", file=sys.stderr)
        print(hash_key(key))
        return 0
    server_environment()  # before the model's libraries load
    from dinosearch.serve.app import run_server

    config = config_from_args(ServeConfig, args)
    return run_server(config)
