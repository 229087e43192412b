"""The app's ``--api URL`` mode: a ``SideBySide`` whose queries go to one ``dinosearch serve``.

Several app sessions then share the server's batched model instead of each loading a backbone. The
page still reads the index folders (metadata, thumbnails, reports); each answer's rows are read
from the very version the server answered with, so a card never mixes versions.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dinosearch.app.compare import SideBySideResult
from dinosearch.app.why import Column, WhyPanel, image_key
from dinosearch.backbones.backbone import Preprocess
from dinosearch.explain.pair import PairExplanation, model_view
from dinosearch.index.handle import IndexHandle, open_index
from dinosearch.inputs.images import read_image
from dinosearch.search import Filters, GroupExclusion, SearchResult, VectorSearcher
from dinosearch.serve.client import Client


class RemotePair:
    """Raw and adapted index folders on this machine, queried through the server at ``url``."""

    def __init__(self, url: str, raw_dir: str | Path, adapted_dir: str | Path) -> None:
        self.client = Client(url)
        self.raw, self.adapted = VectorSearcher(raw_dir), VectorSearcher(adapted_dir)
        self._versions: dict[tuple[str, str], IndexHandle] = {}
        # (index name, result path) → the server's row and version of the last answers: what
        # "why similar" asks the server to explain (a stale version gets 409, never another film)
        self.refs: dict[tuple[str, str], dict[str, Any]] = {}
        self.why = RemoteWhy(self)

    @property
    def preprocess(self) -> Preprocess:
        pre = dict(self.raw.manifest["backbone"]["preprocess"])
        pre["mean"], pre["std"] = tuple(pre["mean"]), tuple(pre["std"])
        return Preprocess(**{k: pre[k] for k in Preprocess.__dataclass_fields__})

    def refresh(self) -> bool:
        return self.raw.refresh() | self.adapted.refresh()

    def query(
        self,
        image: Image.Image,
        k: int,
        *,
        filters: Filters = None,
        exclude_group: GroupExclusion = None,
        region: tuple[float, float, float, float] | None = None,
        feedback: Mapping[str, tuple[Sequence[str], Sequence[str]]] | None = None,
        collapse: str | None = None,
        diversity: float | None = None,
    ) -> SideBySideResult:
        """Top-k of both indexes for one image, from the server (one batched forward there);
        the keywords as ``SideBySide.query`` (``feedback``: "raw"/"adapted" → (like, unlike) ids)."""
        data = io.BytesIO()
        image.save(data, format="PNG")
        names = {"raw": self.raw.index_dir.name, "adapted": self.adapted.index_dir.name}
        params: dict[str, Any] = {"k": k, "indexes": list(names.values())}
        if region is not None:
            params["region"] = [float(v) for v in region]
        marks = feedback or {}
        for i, field in enumerate(("like", "unlike")):
            chosen = {names[s]: [str(x) for x in m[i]] for s, m in marks.items() if m[i]}
            if chosen:
                params[field] = chosen
        if collapse is not None:
            params["collapse"] = collapse
        if diversity is not None:
            params["diversity"] = diversity
        if filters:
            params["filter"] = filters
        if exclude_group is not None:
            column, value = exclude_group
            params["exclude_group"] = {
                "column": column,
                "value": getattr(value, "item", lambda: value)(),
            }
        answers = self.client.search(image=data.getvalue(), **params)["answers"]
        raw, adapted = (
            self._result(s, a) for s, a in zip((self.raw, self.adapted), answers, strict=True)
        )
        return SideBySideResult(raw, adapted)

    def _result(self, searcher: VectorSearcher, answer: dict[str, Any]) -> SearchResult:
        key = (str(searcher.index_dir), answer["version"])
        if key not in self._versions:  # the version the server answered from, read here
            self._versions[key] = open_index(
                searcher.index_dir, version=answer["version"], verify=False
            )
        ids = np.array([h["row"] for h in answer["hits"]], dtype=np.int64)
        scores = np.array([h["score"] for h in answer["hits"]], dtype=np.float32)
        more = None
        if answer["hits"] and answer["hits"][0].get("more_films") is not None:
            more = np.array([int(h["more_films"]) for h in answer["hits"]], dtype=np.int64)
        rows = self._versions[key].take(ids)
        for row, path in zip(ids.tolist(), rows.column("path").to_pylist(), strict=True):
            ref = {"index": answer["index"], "row": int(row), "version": answer["version"]}
            self.refs[(answer["index"], str(path))] = ref
        return SearchResult(ids, scores, rows, more)


class RemoteWhy(WhyPanel):
    """The "why similar" panel of ``--api`` mode: the server explains (its model, its version of
    the index), this side draws; the same panel as ``WhySimilar``'s, memoised the same way."""

    def __init__(self, pair: RemotePair, size: int = 64) -> None:
        super().__init__(size)
        self.pair = pair

    def _ref(self, column: Column, result_path: str) -> dict[str, Any]:
        """The server's index, row and version of one result of the last search."""
        searcher = self.pair.raw if column == "raw" else self.pair.adapted
        ref = self.pair.refs.get((searcher.index_dir.name, result_path))
        if ref is None:
            raise ValueError(f"{result_path} is not among the last results; search again")
        return ref

    def _key(self, column: Column, query: Image.Image, result_path: str, matches: bool) -> tuple:
        ref = self._ref(column, result_path)
        return (column, ref["version"], ref["row"], image_key(query), matches)

    def _compute(
        self, column: Column, query: Image.Image, result_path: str, matches: bool
    ) -> PairExplanation:
        data = io.BytesIO()
        query.save(data, format="PNG")
        ref = self._ref(column, result_path)
        answer = self.pair.client.explain(image=data.getvalue(), result=ref, matches=matches)
        views = [model_view(i, self.pair.preprocess) for i in (query, read_image(result_path))]
        return PairExplanation.from_json(answer["explanation"], *views)
