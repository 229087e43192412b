"""The app's ``--api URL`` mode: a ``SideBySide`` whose queries go to one ``dinosearch serve``.

Several app sessions then share the server's batched model instead of each loading a backbone. The
page still reads the index folders (metadata, thumbnails, reports); each answer's rows are read
from the very version the server answered with, so a card never mixes versions.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dinosearch.app.compare import SideBySideResult
from dinosearch.backbones.backbone import Preprocess
from dinosearch.index.handle import IndexHandle, open_index
from dinosearch.search import Filters, GroupExclusion, SearchResult, VectorSearcher
from dinosearch.serve.client import Client


class RemotePair:
    """Raw and adapted index folders on this machine, queried through the server at ``url``."""

    def __init__(self, url: str, raw_dir: str | Path, adapted_dir: str | Path) -> None:
        self.client = Client(url)
        self.raw, self.adapted = VectorSearcher(raw_dir), VectorSearcher(adapted_dir)
        self._versions: dict[tuple[str, str], IndexHandle] = {}

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
    ) -> SideBySideResult:
        """Top-k of both indexes for one image, from the server (one batched forward there)."""
        data = io.BytesIO()
        image.save(data, format="PNG")
        params: dict[str, Any] = {
            "k": k,
            "indexes": [self.raw.index_dir.name, self.adapted.index_dir.name],
        }
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
        rows = self._versions[key].rows(ids)
        rows.insert(0, "rank", np.arange(1, len(ids) + 1))
        rows.insert(1, "score", scores)
        front = ["rank", "score", "id", "path", "label"]
        return SearchResult(ids, scores, rows[front + [c for c in rows.columns if c not in front]])
