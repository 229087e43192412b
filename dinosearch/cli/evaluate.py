"""``dinosearch eval``: A/B retrieval metrics of a raw vs an adapted index of the same images."""

from __future__ import annotations

import argparse
from pathlib import Path

from dinosearch.cli.common import parse_ks
from dinosearch.core.columns import GROUP, LABEL, STRATUM
from dinosearch.evaluate.indexes import evaluate_indexes


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--raw", required=True, help="raw index folder (no adapter), e.g. indexes/A")
    p.add_argument("--adapted", required=True, help="adapted index folder of the same images")
    p.add_argument(
        "--label-column", default=LABEL, help="metadata column of labels ('a|b' = multi)"
    )
    p.add_argument(
        "--group-column",
        default=None,
        help=f"items sharing this value with the query are excluded (default: "
        f"{GROUP} when present; '' to disable)",
    )
    p.add_argument(
        "--stratify-column",
        default=None,
        help=f"per-stratum table and within-stratum protocol (default: {STRATUM} "
        "when present; '' to disable)",
    )
    p.add_argument("--k", default="1,5,10,20", help="comma-separated cut-offs")
    p.add_argument(
        "--out", default=None, help="report folder (default: reports/<raw>_vs_<adapted>)"
    )
    p.add_argument(
        "--queries",
        default=None,
        metavar="COLUMN=VALUE",
        help="query-set protocol: rows where COLUMN equals VALUE query the other rows "
        "(default: leave-one-out over all rows)",
    )
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument(
        "--features",
        default=None,
        help="features folder both indexes were built from, when it moved (default: the manifest's)",
    )
    p.add_argument(
        "--adapter", default=None, help="the adapted index's adapter folder, when it moved"
    )
    p.add_argument(
        "--whiten-dim", type=int, default=None, help="PCA-whitening dimensions (default: all)"
    )


def run(args: argparse.Namespace) -> int:
    out = (
        args.out
        or Path("reports")
        / f"{Path(args.raw).resolve().name}_vs_{Path(args.adapted).resolve().name}"
    )
    _, _, text = evaluate_indexes(
        args.raw,
        args.adapted,
        out,
        label_column=args.label_column,
        group_column=args.group_column,
        stratify_column=args.stratify_column,
        ks=parse_ks(args.k),
        queries=args.queries,
        n_boot=args.bootstrap,
        seed=args.seed,
        whiten_dim=args.whiten_dim,
        features=args.features,
        adapter=args.adapter,
    )
    print(text)
    return 0
