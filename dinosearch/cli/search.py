"""``dinosearch search``: query an index with an image; a readable table, or JSON with --json."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from dinosearch.core.config import add_config_arguments, config_from_args
from dinosearch.search.config import SearchConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, SearchConfig)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(SearchConfig, args)
    if config.server:
        from dinosearch.cli.remote import run_remote

        return run_remote(config)
    from dinosearch.core.viewer import viewer_template, viewer_url

    template = viewer_template(config.viewer_url)  # checked before anything heavy loads
    missing = [q for q in config.image if "://" not in q and not Path(q).is_file()]
    if missing:
        raise FileNotFoundError(f"--image {missing[0]}: no such file; give an image file's path")
    from dinosearch.core.privacy import (
        SHOW_COLUMNS_ENV,
        hide_identifiers_from_env,
        parse_columns,
        visible_record,
    )
    from dinosearch.core.runtime import resolve_device
    from dinosearch.core.warnings import untrained_note
    from dinosearch.search import Searcher

    searcher = Searcher(
        config.index, device=resolve_device(config.device), search_params=config.search_params()
    )
    if searcher.random_init:
        fp = searcher.manifest["backbone"]["fingerprint"]
        print(untrained_note(fp, f"results of {config.index} are not meaningful"), file=sys.stderr)
    filters = list(config.filter) if config.filter else None  # every one must hold
    queries = list(config.image)
    results = searcher.search_images(
        queries,
        config.k,
        filters=filters,
        exclude_group=config.exclusion(),
        **config.refinements(),
    )
    if template is not None:  # a column like any other: in the JSON, and in --columns
        for r in results:
            r.rows["viewer_url"] = [viewer_url(template, row) for row in r.rows.to_dict("records")]
    hide = config.hide_identifiers or hide_identifiers_from_env(os.environ)
    allowed = parse_columns(os.environ.get(SHOW_COLUMNS_ENV))
    if config.json:
        print(_as_json(queries, results, searcher.handle.version, allowed if hide else None))
        return 0
    import pandas as pd

    columns = [c.strip() for c in config.columns.split(",")]
    for query, result in zip(queries, results, strict=True):
        print(
            f"query {query} → {len(result)} results from {config.index} ({searcher.handle.version})"
        )
        keep = visible_record(dict.fromkeys(columns), allowed) if hide else columns
        shown = result.rows[[c for c in keep if c in result.rows.columns]]
        with pd.option_context("display.max_colwidth", 60, "display.width", 200):
            print(shown.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    return 0


def _as_json(queries: list[str], results: list[Any], version: str, allowed: Any | None) -> str:
    """The results as JSON: one object per query (just the object for one query); ``allowed``
    given: only the columns the app's cards show."""

    out = [
        {
            "query": str(q),
            "version": version,
            "results": [
                _shown(row, allowed) if allowed is not None else row
                for row in json.loads(r.rows.to_json(orient="records"))
            ],
        }
        for q, r in zip(queries, results, strict=True)
    ]
    return json.dumps(out if len(out) > 1 else out[0], indent=2)


def _shown(row: dict[str, Any], allowed: Any) -> dict[str, Any]:
    """The allowed columns of ``row``, and its ``more_films`` count (not metadata) where present."""
    from dinosearch.core.privacy import visible_record

    more = {"more_films": row["more_films"]} if "more_films" in row else {}
    return {**visible_record(row, allowed), **more}
