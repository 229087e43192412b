"""``dinosearch search``'s settings (standard library only: ``--help`` never waits for faiss)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dinosearch.core.config import opt

_TUNE = "search-time parameters (default: those the index was built with)"
_REFINE = "refining the search (docs/refine.md)"
REGION_METHODS = ("crop", "tokens")  # search.region's methods (kept here: no torch at --help)


@dataclass(frozen=True)
class SearchConfig:
    """Query an index with one or more images."""

    index: str = opt("index folder written by `dinosearch index`", required=True)
    image: tuple[str, ...] = opt("query image file(s)", required=True, nargs="+", metavar="IMAGE")
    k: int = opt("results per query", default=10, flag="-k", aliases=("--k",))
    filter: tuple[str, ...] | None = opt("keep rows matching this SQL expression over the metadata, applied before ranking, e.g. \"patient_age >= 60 AND view IN ('PA','AP')\" (the old 'column == value' still works); repeat: all must hold", default=None, repeat=True, metavar="FILTER")  # fmt: skip
    exclude_group: str | None = opt("drop results whose COLUMN equals VALUE (e.g. patient_id=P123)", default=None, metavar="COLUMN=VALUE")  # fmt: skip
    json: bool = opt("print JSON instead of a table", default=False)
    columns: str = opt("table columns (comma-separated; the JSON has them all)", default="rank,score,id,label,path")  # fmt: skip
    hide_identifiers: bool = opt("show only what the app's cards show: rank, score, label, view, source_repo and the columns DINOSEARCH_SHOW_COLUMNS allows (no id, path, patient_id…); also on when DINOSEARCH_HIDE_IDENTIFIERS=1", default=False)  # fmt: skip
    viewer_url: str | None = opt("link each result to the archive's viewer, e.g. 'https://pacs/viewer?StudyInstanceUIDs={StudyInstanceUID}' (default: $DINOSEARCH_VIEWER_URL)", default=None, metavar="TEMPLATE")  # fmt: skip
    region: str | None = opt("search with this box of the query image, in its pixels (x right, y down)", default=None, metavar="X0,Y0,X1,Y1", group=_REFINE)  # fmt: skip
    region_method: str = opt("crop: re-embed the box as a film of its own; tokens: only the box's patches through the ViT (DINOv2)", default="crop", group=_REFINE)  # fmt: skip
    like: tuple[str, ...] = opt("ids of results that are what you mean: the query moves towards them (Rocchio α=1, β=0.75)", default=(), nargs="+", metavar="ID", group=_REFINE)  # fmt: skip
    unlike: tuple[str, ...] = opt("ids of results that are not: the query moves away from them (γ=0.25)", default=(), nargs="+", metavar="ID", group=_REFINE)  # fmt: skip
    per_patient: bool = opt("one case per patient: each patient's best film, with how many of their other films match (more_films)", default=False, group=_REFINE)  # fmt: skip
    all_films: bool = opt("every matching film, patients repeating (the default)", default=False, group=_REFINE)  # fmt: skip
    patient_column: str = opt("the column --per-patient groups by", default="patient_id", group=_REFINE)  # fmt: skip
    diversity: float | None = opt("MMR re-ranking of 4k candidates: 1 = none, lower = more diverse (e.g. 0.7)", default=None, metavar="LAMBDA", group=_REFINE)  # fmt: skip
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
        if self.per_patient and self.all_films:
            raise ValueError("--per-patient and --all-films contradict each other; give one")
        if self.region_method not in REGION_METHODS:
            raise ValueError(f"--region-method {self.region_method!r}: use crop or tokens")
        if self.diversity is not None and not 0.0 <= self.diversity <= 1.0:
            raise ValueError(f"--diversity {self.diversity}: must be in [0, 1] (1 = none)")

    def refinements(self) -> dict[str, Any]:
        """The ``Searcher.search_images`` arguments beyond filters: region, marks, collapse, MMR."""
        from dinosearch.search.region import parse_box  # torch: only once a search runs

        return {
            "region": None if self.region is None else parse_box(self.region),
            "region_method": self.region_method,
            "like": list(self.like),
            "unlike": list(self.unlike),
            "collapse": self.patient_column if self.per_patient else None,
            "diversity": self.diversity,
        }

    def exclusion(self) -> tuple[str, str] | None:
        """``--exclude-group COLUMN=VALUE`` as (column, value)."""
        if not self.exclude_group:
            return None
        column, _, value = self.exclude_group.partition("=")
        return column.strip(), value.strip()

    def search_params(self) -> dict[str, Any]:
        tuned = {"nprobe": self.nprobe, "k_factor": self.k_factor, "ef_search": self.ef_search}
        return {name: v for name, v in tuned.items() if v is not None}
