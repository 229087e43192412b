"""``dinosearch search --server URL``: the same query asked of a ``dinosearch serve``, printed alike."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pandas as pd


def run_remote(args: argparse.Namespace) -> int:
    """Send each ``--image`` to the server; print JSON or tables as the local search does."""
    from dinosearch.client import Client

    name = Path(args.index).name
    params: dict[str, Any] = {"k": args.k, "indexes": [name]}
    if args.filter:
        params["filter"] = " and ".join(args.filter)
    if args.exclude_group:
        column, sep, value = args.exclude_group.partition("=")
        if not sep:
            raise ValueError(f"--exclude-group {args.exclude_group!r}: write it as COLUMN=VALUE")
        params["exclude_group"] = {"column": column.strip(), "value": value.strip()}
    out = []
    with Client(args.server) as client:
        for image in args.image:
            answer = client.search(image=image, **params)["answers"][0]
            rows = [
                {"rank": h["rank"], "score": h["score"], **h["metadata"]} for h in answer["hits"]
            ]
            out.append({"query": str(image), "version": answer["version"], "results": rows})
    if args.json:
        print(json.dumps(out if len(out) > 1 else out[0], indent=2))
        return 0
    columns = [c.strip() for c in args.columns.split(",")]
    for found in out:
        print(
            f"query {found['query']} → {len(found['results'])} results from {args.server} "
            f"{name} ({found['version']})"
        )
        table = pd.DataFrame(found["results"])
        shown = table[[c for c in columns if c in table.columns]]
        with pd.option_context("display.max_colwidth", 60, "display.width", 200):
            print(shown.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    return 0
