"""``dinosearch explain``: why an indexed film is similar to a query, as a PNG map and/or JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dinosearch.core.config import add_config_arguments, config_from_args
from dinosearch.explain.config import ExplainConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, ExplainConfig)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(ExplainConfig, args)
    from dinosearch.core.runtime import resolve_device
    from dinosearch.core.warnings import untrained_note
    from dinosearch.explain import Explainer
    from dinosearch.explain.draw import figure, save
    from dinosearch.explain.words import describe
    from dinosearch.search import Searcher

    searcher = Searcher(config.index, device=resolve_device(config.device))
    if searcher.random_init:
        fp = searcher.manifest["backbone"]["fingerprint"]
        print(untrained_note(fp, "the map explains an untrained model's score"), file=sys.stderr)
    ids = searcher.metadata["id"].astype(str)
    hits = ids.index[ids == str(config.result)]
    if len(hits) == 0:
        raise ValueError(
            f"--result {config.result!r} is not an id in {config.index}; "
            "`dinosearch search --index … --image …` lists the ids of the results"
        )
    row = searcher.metadata.iloc[int(hits[0])]
    explained = Explainer.for_searcher(searcher).explain(
        config.image,
        str(row["path"]),
        method=config.method,
        steps=config.steps,
        matches=config.matches > 0 or config.json,
    )
    if config.out:
        title = f"{Path(config.image).name} → {config.result} ({Path(config.index).name})"
        save(figure(explained, title, matches=config.matches), config.out)
    if config.json:
        out = {
            "index": str(config.index),
            "version": searcher.handle.version,
            **explained.to_json(),
        }
        out["query"] = {"path": str(config.image), **out["query"]}
        out["result"] = {"id": str(config.result), "path": str(row["path"]), **out["result"]}
        print(json.dumps(out, indent=2))
    else:  # the same lines the PNG carries (and stores in its Description field)
        print(f"{config.out}:")
        print("\n".join(describe(explained.map)))
    return 0
