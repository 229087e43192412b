"""``dinosearch search``'s settings (standard library only: ``--help`` never waits for faiss)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dinosearch.core.config import opt

_TUNE = "search-time parameters (default: those the index was built with)"


@dataclass(frozen=True)
class SearchConfig:
    """Query an index with one or more images."""

    index: str = opt("index folder written by `dinosearch index`", required=True)
    image: tuple[str, ...] = opt("query image file(s)", required=True, nargs="+", metavar="IMAGE")
    k: int = opt("results per query", default=10, flag="-k", aliases=("--k",))
    filter: tuple[str, ...] | None = opt('keep rows matching "column == value" (or !=); repeat to combine', default=None, repeat=True, metavar="FILTER")  # fmt: skip
    exclude_group: str | None = opt("drop results whose COLUMN equals VALUE (e.g. patient_id=P123)", default=None, metavar="COLUMN=VALUE")  # fmt: skip
    json: bool = opt("print JSON instead of a table", default=False)
    columns: str = opt("table columns (comma-separated; the JSON has them all)", default="rank,score,id,label,path")  # fmt: skip
    hide_identifiers: bool = opt("show only what the app's cards show: rank, score, label, view, source_repo and the columns DINOSEARCH_SHOW_COLUMNS allows (no id, path, patient_id…); also on when DINOSEARCH_HIDE_IDENTIFIERS=1", default=False)  # fmt: skip
    viewer_url: str | None = opt("link each result to the archive's viewer, e.g. 'https://pacs/viewer?StudyInstanceUIDs={StudyInstanceUID}' (default: $DINOSEARCH_VIEWER_URL)", default=None, metavar="TEMPLATE")  # fmt: skip
    device: str = opt("auto, cpu, cuda or cuda:N", default="cpu")
    server: str | None = opt("ask a `dinosearch serve` at URL instead (--index: the index's name there; key from DINOSEARCH_API_KEY); its privacy rules apply, as with --hide-identifiers", default=None, metavar="URL")  # fmt: skip
    nprobe: int | None = opt("IVF lists to visit: more finds more, slower", default=None, group=_TUNE)  # fmt: skip
    k_factor: float | None = opt("re-ranked IVF-PQ: candidates re-scored per result", default=None, group=_TUNE)  # fmt: skip
    ef_search: int | None = opt("HNSW: candidate list size", default=None, group=_TUNE)

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"-k {self.k}: must be ≥ 1")
        if self.exclude_group is not None and "=" not in self.exclude_group:
            raise ValueError(f"--exclude-group {self.exclude_group!r}: write it as COLUMN=VALUE")

    def exclusion(self) -> tuple[str, str] | None:
        """``--exclude-group COLUMN=VALUE`` as (column, value)."""
        if not self.exclude_group:
            return None
        column, _, value = self.exclude_group.partition("=")
        return column.strip(), value.strip()

    def search_params(self) -> dict[str, Any]:
        tuned = {"nprobe": self.nprobe, "k_factor": self.k_factor, "ef_search": self.ef_search}
        return {name: v for name, v in tuned.items() if v is not None}
