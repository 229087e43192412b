"""The Streamlit app's query side, apart from drawing: settings, one query to both indexes, agreement.

Plain Python (testable without Streamlit); ``page.py`` lays the page out and ``render.py`` draws. Finding index folders,
matching raw with adapted ones (a ``Comparison``) and their eval reports is ``catalog.py``; report
tables are ``evaluate/report.py``.
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from PIL import Image

from dinosearch.app.catalog import IndexInfo, comparison_problem
from dinosearch.core.env import env_str
from dinosearch.core.metrics import split_labels
from dinosearch.core.privacy import allowed_columns, parse_columns
from dinosearch.core.viewer import viewer_template, viewer_url
from dinosearch.inputs.images import ImageReadError, read_image

if TYPE_CHECKING:
    from dinosearch.backbones import Preprocess
    from dinosearch.search import Filters, GroupExclusion, SearchResult
    from dinosearch.search.region import Box

MAX_UPLOAD_MB = 64  # also server.maxUploadSize in .streamlit/config.toml
UPLOAD_TYPES = ("png", "jpg", "jpeg", "dcm", "dicom")
# The metadata a visitor may see: core/privacy.py (SAFE_COLUMNS + --show-columns). A visitor can
# only hide allowed ones. id (when allowed) is shown on the card's first line, path never.
HIDDEN_COLUMNS = (
    "rank",
    "score",
    "id",
    "path",
    "viewer_url",
)  # shown in their own way, never as metadata
DEMO_COMMAND = (
    "dinosearch demo --images path/to/manifest.parquet --backbone dinov2_vits14 --weights random"
)


@dataclass(frozen=True)
class AppSettings:
    indexes: Path  # the folder holding index folders (indexes/NAME)
    reports: tuple[Path, ...]  # folders scanned for **/report.json
    show_columns: tuple[str, ...]  # metadata columns allowed on top of SAFE_COLUMNS
    viewer_url: str | None = None  # result → archive viewer link template (core.viewer)
    archive: str | None = None  # dicomweb+http… archive whose films can be the query (by UID)
    api: str | None = None  # a `dinosearch serve` URL that answers the queries (its model shared)

    @property
    def show_id(self) -> bool:
        """Whether cards and pickers may show the ``id`` column (a relative path for folders)."""
        return "id" in self.show_columns


def parse_settings(argv: Sequence[str], env: Mapping[str, str]) -> AppSettings:
    """``dinosearch app --indexes DIR [--reports DIR] [--show-columns a,b]`` (the page's own flags).

    Flags win over ``DINOSEARCH_INDEXES`` / ``DINOSEARCH_REPORTS`` / ``DINOSEARCH_SHOW_COLUMNS``;
    reports default to ``reports/`` beside the indexes folder and in the working folder.
    """
    p = argparse.ArgumentParser(add_help=False)
    for flag in ("--indexes", "--reports", "--show-columns", "--viewer-url", "--archive", "--api"):
        p.add_argument(flag, default=None)
    args, _ = p.parse_known_args(list(argv))
    indexes = Path(args.indexes or env_str("DINOSEARCH_INDEXES", env) or "indexes")
    given = args.reports or env_str("DINOSEARCH_REPORTS", env)
    reports = [Path(given)] if given else [indexes.parent / "reports", Path("reports")]
    unique = tuple(dict.fromkeys(p.resolve() for p in reports))
    shown = args.show_columns or env_str("DINOSEARCH_SHOW_COLUMNS", env) or ""
    return AppSettings(
        indexes,
        unique,
        parse_columns(shown),
        viewer_template(args.viewer_url, env),
        args.archive or env_str("DINOSEARCH_ARCHIVE", env) or None,
        args.api or env_str("DINOSEARCH_API", env) or None,
    )


def add_viewer_links(rows: pd.DataFrame, template: str | None) -> pd.DataFrame:
    """``rows`` with a ``viewer_url`` column (the study in the archive's viewer) when configured."""
    if template is not None:
        links = [viewer_url(template, row) for row in rows.to_dict("records")]
        rows["viewer_url"] = pd.Series(links, index=rows.index, dtype=object)  # None stays None
    return rows


def read_archive_query(archive: str, uid: str) -> Image.Image:
    """ "This film in the archive": the instance (SOP Instance UID) or the study's first instance
    (Study Instance UID) fetched from ``archive`` and decoded like an upload."""
    from dinosearch.inputs.dicomweb import fetch_instance

    uid = uid.strip()
    if not uid or len(uid) > 64 or not all(c.isdigit() or c == "." for c in uid):
        raise ValueError(f"{uid[:80]!r} is not a DICOM UID (digits and dots, at most 64)")
    return read_image(fetch_instance(archive, uid), name=uid)


@dataclass
class SideBySideResult:
    raw: SearchResult
    adapted: SearchResult

    def shared_ids(self) -> set[str]:
        """Metadata ids present in both result lists."""
        return set(self.raw.rows["id"].astype(str)) & set(self.adapted.rows["id"].astype(str))


class SideBySide:
    """A raw and an adapted Searcher sharing one backbone: one forward pass feeds both."""

    def __init__(self, raw_dir: str | Path, adapted_dir: str | Path, device: str = "cpu") -> None:
        from dinosearch.search import Searcher

        self.raw = Searcher(raw_dir, device=device)
        self.adapted = Searcher(adapted_dir, backbone=self.raw.backbone, device=device)
        self._lock = threading.Lock()  # Streamlit sessions share this object across threads
        self._check()

    def _check(self) -> None:
        problem = comparison_problem(self.info(self.raw), self.info(self.adapted))
        if problem:
            raise ValueError(problem)

    @staticmethod
    def info(searcher: Any) -> IndexInfo:
        handle = searcher.handle
        return IndexInfo(Path(handle.path).resolve(), handle.version, handle.manifest)

    @property
    def preprocess(self) -> Preprocess:
        return self.raw.backbone.preprocess

    def refresh(self) -> bool:
        """Follow newly published versions of either index (never a half-written one)."""
        with self._lock:
            changed = self.raw.refresh() | self.adapted.refresh()
            if changed:
                self._check()
            return changed

    def query(
        self,
        image: Image.Image,
        k: int,
        *,
        filters: Filters = None,
        exclude_group: GroupExclusion = None,
        region: Box | None = None,
        feedback: Mapping[str, tuple[Sequence[str], Sequence[str]]] | None = None,
        collapse: str | None = None,
        diversity: float | None = None,
    ) -> SideBySideResult:
        """Top-k of both indexes for one image: one backbone forward, two searches.

        ``region`` searches with a box of the image (``search.region``, crop); ``feedback`` maps
        "raw"/"adapted" to that column's (similar ids, not similar ids); ``collapse`` and
        ``diversity`` as in ``VectorSearcher.search_vectors``.
        """
        from dinosearch.search.region import region_features

        self.refresh()
        marks = feedback or {}
        with self._lock:
            if region is None:
                features = self.raw.image_features([image])  # (1, D) backbone features
            else:
                raw = self.raw
                features = region_features(raw.backbone, raw.transform, image, region)[None]
            found = [
                s.search_vectors(
                    s.embed_features(features),
                    k,
                    filters=filters,
                    exclude_group=exclude_group,
                    like=marks.get(side, ((), ()))[0],
                    unlike=marks.get(side, ((), ()))[1],
                    collapse=collapse,
                    diversity=diversity,
                )[0]
                for side, s in (("raw", self.raw), ("adapted", self.adapted))
            ]
        return SideBySideResult(*found)


def read_query(data: bytes, name: str, max_mb: int = MAX_UPLOAD_MB) -> Image.Image:
    """An uploaded file's bytes → grayscale/RGB image (DICOM windowed); ImageReadError if not."""
    suffix = Path(name).suffix.lower().lstrip(".")
    if suffix not in UPLOAD_TYPES:
        raise ImageReadError(
            name, f"a .{suffix} file is not a chest film (upload {', '.join(UPLOAD_TYPES)})"
        )
    if len(data) > max_mb * 2**20:
        raise ImageReadError(
            name, f"file is {len(data) / 2**20:.0f} MB, over the {max_mb} MB limit"
        )
    return read_image(data, name=name)


def model_view(image: Image.Image, pre: Preprocess) -> Image.Image:
    """The query as the backbone sees it: short side resized, centre-cropped (before normalising)."""
    from torchvision.transforms import v2

    from dinosearch.backbones.transforms import interpolation

    resize = v2.Resize(
        pre.resize_size, interpolation=interpolation(pre.interpolation), antialias=True
    )
    return v2.CenterCrop(pre.image_size)(resize(image.convert("RGB")))


@lru_cache(maxsize=1024)  # ≤ 64 MB of 256 px grayscale thumbnails
def thumbnail(path: str, size: int = 256) -> Image.Image | None:
    """A square, black-padded small copy of an indexed image; None when unreadable or gone."""
    try:
        img = read_image(path)
    except ImageReadError:
        return None
    img.thumbnail((size, size))
    square = Image.new(img.mode, (size, size))  # black, like a film's unexposed border
    square.paste(img, ((size - img.width) // 2, (size - img.height) // 2))
    return square


def overlap_at_k(a: Sequence[Any], b: Sequence[Any], k: int) -> float:
    """Share of the top k found in both lists: |top-k(a) ∩ top-k(b)| / k."""
    return len(set(list(a)[:k]) & set(list(b)[:k])) / k if k > 0 else 0.0


def label_precision(labels: Sequence[Any], query_label: Any, k: int) -> float | None:
    """Share of the top k sharing a label with the query ('a|b' = several); None if unlabelled."""
    wanted = set(split_labels(query_label))
    if not wanted or k < 1:
        return None
    return sum(bool(wanted & set(split_labels(x))) for x in list(labels)[:k]) / k


def agreement(result: SideBySideResult, query_label: Any, k: int) -> dict[str, float | None]:
    return {
        "overlap": overlap_at_k(result.raw.rows["id"], result.adapted.rows["id"], k),
        "raw_precision": label_precision(result.raw.rows["label"], query_label, k),
        "adapted_precision": label_precision(result.adapted.rows["label"], query_label, k),
    }


def display_columns(columns: Sequence[str], allowed: Sequence[str]) -> list[str]:
    """The columns a visitor may see: the safe ones present, then those the server ``allowed``."""
    return [c for c in allowed_columns(allowed) if c in columns and c not in HIDDEN_COLUMNS]


def _numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def range_options(metadata: pd.DataFrame, columns: Sequence[str]) -> dict[str, tuple[float, float]]:
    """(min, max) of the displayed numeric columns (ages…) with at least two values."""
    return {
        c: (float(metadata[c].min()), float(metadata[c].max()))
        for c in columns
        if _numeric(metadata[c]) and metadata[c].nunique() >= 2
    }


def range_filter(column: str, low: float, high: float) -> str:
    """An SQL filter keeping ``low ≤ column ≤ high`` (the column name quoted as an identifier)."""
    name = column.replace('"', '""')
    return f'"{name}" BETWEEN {float(low)!r} AND {float(high)!r}'


def filter_options(metadata: pd.DataFrame, columns: Sequence[str], most: int = 30) -> dict:
    """Values of the displayed non-numeric columns worth filtering on (2 to ``most`` values)."""
    options = {}
    for c in columns:
        if _numeric(metadata[c]):
            continue  # a range instead: range_options
        values = metadata[c].dropna().unique()
        if 2 <= len(values) <= most:
            options[c] = sorted(values.tolist(), key=str)
    return options
