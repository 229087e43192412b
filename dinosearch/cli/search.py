"""``dinosearch search``: query an index with an image; a readable table, or JSON with --json."""

from __future__ import annotations

import argparse
import json
import os
import sys

import pandas as pd

from dinosearch.core.privacy import (
    HIDE_IDENTIFIERS_ENV,
    SHOW_COLUMNS_ENV,
    hide_identifiers_from_env,
    parse_columns,
    visible_record,
)
from dinosearch.core.runtime import resolve_device
from dinosearch.core.viewer import viewer_template, viewer_url
from dinosearch.search import Searcher
from dinosearch.search.region import REGION_METHODS, parse_box


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", required=True, help="index folder written by `dinosearch index`")
    p.add_argument("--image", required=True, nargs="+", help="query image file(s)")
    p.add_argument("-k", type=int, default=10, help="results per query")
    p.add_argument(
        "--filter",
        action="append",
        default=None,
        help="keep rows matching this SQL expression over the metadata, applied before ranking "
        "(e.g. \"patient_age >= 60 AND view IN ('PA','AP')\"; the old 'column == value' works); "
        "repeat to combine with AND",
    )
    p.add_argument(
        "--exclude-group",
        default=None,
        metavar="COLUMN=VALUE",
        help="drop results whose COLUMN equals VALUE (e.g. patient_id=P123)",
    )
    refine = p.add_argument_group("refining the search")
    refine.add_argument(
        "--region",
        metavar="X0,Y0,X1,Y1",
        help="search with this box of the query image (pixels; x right, y down)",
    )
    refine.add_argument(
        "--region-method",
        choices=REGION_METHODS,
        default="crop",
        help="crop: re-embed the box as a film (default); tokens: only the box's patches through the ViT",
    )
    refine.add_argument(
        "--like", nargs="+", action="extend", default=[], metavar="ID",
        help="ids of results that are what you mean: the query moves towards them (Rocchio)",
    )  # fmt: skip
    refine.add_argument(
        "--unlike", nargs="+", action="extend", default=[], metavar="ID",
        help="ids of results that are not: the query moves away from them",
    )  # fmt: skip
    one = refine.add_mutually_exclusive_group()
    one.add_argument(
        "--per-patient", dest="per_patient", action="store_true", default=False,
        help="one case per patient: each patient's best film, with how many others matched",
    )  # fmt: skip
    one.add_argument(
        "--all-films", dest="per_patient", action="store_false",
        help="every matching film, patients repeating (the default here)",
    )  # fmt: skip
    refine.add_argument(
        "--patient-column", default="patient_id", help="the column --per-patient groups by"
    )
    refine.add_argument(
        "--diversity", type=float, metavar="LAMBDA",
        help="MMR re-ranking: 1 = none, lower = more diverse results (e.g. 0.7)",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--columns",
        default="rank,score,id,label,path",
        help="table columns (comma-separated; the JSON has them all)",
    )
    p.add_argument(
        "--hide-identifiers",
        action="store_true",
        default=None,
        help="show only what the app's cards show: rank, score, label, view, source_repo and the "
        f"columns {SHOW_COLUMNS_ENV} allows (no id, path, patient_id…); also on when "
        f"{HIDE_IDENTIFIERS_ENV}=1",
    )
    p.add_argument(
        "--viewer-url",
        default=None,
        metavar="TEMPLATE",
        help="link each result to the archive's viewer, e.g. "
        "'https://pacs/viewer?StudyInstanceUIDs={StudyInstanceUID}' (default: $DINOSEARCH_VIEWER_URL)",
    )
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    tune = p.add_argument_group("search-time parameters (default: those the index was built with)")
    tune.add_argument("--nprobe", type=int, help="IVF lists to visit: more finds more, slower")
    tune.add_argument(
        "--k-factor", type=float, help="re-ranked IVF-PQ: candidates re-scored per result"
    )
    tune.add_argument("--ef-search", type=int, help="HNSW: candidate list size")


def run(args: argparse.Namespace) -> int:
    template = viewer_template(args.viewer_url)
    tuned = {"nprobe": args.nprobe, "k_factor": args.k_factor, "ef_search": args.ef_search}
    searcher = Searcher(
        args.index,
        device=resolve_device(args.device),
        search_params={name: v for name, v in tuned.items() if v is not None},
    )
    if searcher.random_init:
        print(
            f"warning: {args.index} was built with a randomly initialised backbone "
            f"({searcher.manifest['backbone']['fingerprint']}): results are not meaningful",
            file=sys.stderr,
        )
    exclude = None
    if args.exclude_group:
        column, sep, value = args.exclude_group.partition("=")
        if not sep:
            raise ValueError(f"--exclude-group {args.exclude_group!r}: write it as COLUMN=VALUE")
        exclude = (column.strip(), value.strip())
    filters = list(args.filter) if args.filter else None  # every one must hold
    results = searcher.search_images(
        args.image,
        args.k,
        filters=filters,
        exclude_group=exclude,
        region=None if args.region is None else parse_box(args.region),
        region_method=args.region_method,
        like=args.like,
        unlike=args.unlike,
        collapse=args.patient_column if args.per_patient else None,
        diversity=args.diversity,
    )
    hide = bool(args.hide_identifiers) or hide_identifiers_from_env(os.environ)
    allowed = parse_columns(os.environ.get(SHOW_COLUMNS_ENV))
    if template is not None:  # a column like any other: in the JSON, and in --columns
        for r in results:
            r.rows["viewer_url"] = [viewer_url(template, row) for row in r.rows.to_dict("records")]
    if args.json:
        out = [
            {
                "query": str(q),
                "version": searcher.handle.version,
                "results": [
                    visible_record(row, allowed) if hide else row
                    for row in json.loads(r.rows.to_json(orient="records"))
                ],
            }
            for q, r in zip(args.image, results, strict=True)
        ]
        print(json.dumps(out if len(out) > 1 else out[0], indent=2))
        return 0
    columns = [c.strip() for c in args.columns.split(",")]
    for query, result in zip(args.image, results, strict=True):
        print(
            f"query {query} → {len(result)} results from {args.index} ({searcher.handle.version})"
        )
        keep = visible_record(dict.fromkeys(columns), allowed) if hide else columns
        shown = result.rows[[c for c in keep if c in result.rows.columns]]
        with pd.option_context("display.max_colwidth", 60, "display.width", 200):
            print(shown.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    return 0
