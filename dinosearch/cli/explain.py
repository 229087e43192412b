"""``dinosearch explain``: why an indexed film is similar to a query, as a PNG map and/or JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dinosearch.core.runtime import resolve_device
from dinosearch.explain import Explainer
from dinosearch.explain.draw import figure, save
from dinosearch.explain.words import describe
from dinosearch.search import Searcher


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", required=True, help="index folder written by `dinosearch index`")
    p.add_argument("--image", required=True, help="query image file")
    p.add_argument("--result", required=True, help="id of the indexed film (the `id` column)")
    p.add_argument("--out", default=None, help="PNG to write the side-by-side map to")
    p.add_argument("--json", action="store_true", help="print the patch grid and sums as JSON")
    p.add_argument(
        "--method",
        choices=["auto", "decomposition", "token-ig", "input-ig"],
        default="auto",
        help="auto: exact decomposition for a raw mean-pooled index, integrated gradients over "
        "patch tokens through an adapter, gradient × input for CLS pooling (docs/explain.md)",
    )
    p.add_argument("--steps", type=int, default=None, help="integration steps (default by method)")
    p.add_argument(
        "--matches", type=int, default=0, metavar="N", help="draw N best-match lines (0: none)"
    )
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")


def run(args: argparse.Namespace) -> int:
    if args.out is None and not args.json:
        raise ValueError("nothing to write: give --out map.png, --json, or both")
    searcher = Searcher(args.index, device=resolve_device(args.device))
    if searcher.random_init:
        print(
            f"warning: {args.index} was built with a randomly initialised backbone: the map "
            "explains an untrained model's score",
            file=sys.stderr,
        )
    ids = searcher.metadata["id"].astype(str)
    hits = ids.index[ids == str(args.result)]
    if len(hits) == 0:
        raise ValueError(
            f"--result {args.result!r} is not an id in {args.index}; "
            "`dinosearch search --index … --image …` lists the ids of the results"
        )
    row = searcher.metadata.iloc[int(hits[0])]
    explained = Explainer.for_searcher(searcher).explain(
        args.image,
        str(row["path"]),
        method=args.method,
        steps=args.steps,
        matches=args.matches > 0 or args.json,
    )
    if args.out:
        title = f"{Path(args.image).name} → {args.result} ({Path(args.index).name})"
        save(figure(explained, title, matches=args.matches), args.out)
    if args.json:
        out = {"index": str(args.index), "version": searcher.handle.version, **explained.to_json()}
        out["query"] = {"path": str(args.image), **out["query"]}
        out["result"] = {"id": str(args.result), "path": str(row["path"]), **out["result"]}
        print(json.dumps(out, indent=2))
    else:  # the same lines the PNG carries (and stores in its Description field)
        print(f"{args.out}:")
        print("\n".join(describe(explained.map)))
    return 0
