"""``dinosearch search --server URL``: the same query asked of a ``dinosearch serve``, printed alike."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dinosearch.search.config import SearchConfig


def run_remote(config: SearchConfig) -> int:
    """Send each ``--image`` to ``config.server``; print JSON or tables as the local search does."""
    import pandas as pd

    from dinosearch.client import Client

    name = Path(config.index).name
    params: dict[str, Any] = {"k": config.k, "indexes": [name]}
    if config.filter:
        params["filter"] = " and ".join(config.filter)
    exclusion = config.exclusion()
    if exclusion is not None:
        params["exclude_group"] = {"column": exclusion[0], "value": exclusion[1]}
    params.update(_refinements(config))
    out = []
    with Client(str(config.server)) as client:
        for image in config.image:
            answer = client.search(image=image, **params)["answers"][0]
            rows = [
                {"rank": h["rank"], "score": h["score"], **_more(h), **h["metadata"]}
                for h in answer["hits"]
            ]
            rows = [{**r, "viewer_url": h["viewer_url"]} if h["viewer_url"] else r
                    for r, h in zip(rows, answer["hits"], strict=True)]  # fmt: skip
            out.append({"query": str(image), "version": answer["version"], "results": rows})
    if config.json:
        print(json.dumps(out if len(out) > 1 else out[0], indent=2))
        return 0
    columns = [c.strip() for c in config.columns.split(",")]
    for found in out:
        print(
            f"query {found['query']} → {len(found['results'])} results from {config.server} "
            f"{name} ({found['version']})"
        )
        table = pd.DataFrame(found["results"])
        shown = table[[c for c in columns if c in table.columns]]
        with pd.option_context("display.max_colwidth", 60, "display.width", 200):
            print(shown.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    return 0


def _refinements(config: SearchConfig) -> dict[str, Any]:
    """--region/--like/--unlike/--per-patient/--diversity as the server's request fields."""
    if config.region is not None and config.region_method != "crop":
        raise ValueError(
            f"--region-method {config.region_method}: a server embeds regions by crop; drop the flag"
        )
    local = config.refinements()
    found: dict[str, Any] = {
        "region": None if local["region"] is None else list(local["region"]),
        "like": local["like"],
        "unlike": local["unlike"],
        "collapse": local["collapse"],
        "diversity": local["diversity"],
    }
    return {name: value for name, value in found.items() if value not in (None, [])}


def _more(hit: dict[str, Any]) -> dict[str, Any]:
    return {} if hit.get("more_films") is None else {"more_films": hit["more_films"]}
