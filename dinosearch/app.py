"""The Streamlit app's logic, apart from drawing: find and pair indexes, query both, agreement, reports.

Everything here is plain Python (testable without Streamlit); ``streamlit_app.py`` only draws.
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

from dinosearch.images import ImageReadError, read_image
from dinosearch.metrics import split_labels
from dinosearch.publish import VERSIONS, current_version
from dinosearch.storage import read_json

if TYPE_CHECKING:
    from dinosearch.backbone import Preprocess
    from dinosearch.search import Filters, GroupExclusion, SearchResult

MAX_UPLOAD_MB = 64  # also server.maxUploadSize in .streamlit/config.toml
UPLOAD_TYPES = ("png", "jpg", "jpeg", "dcm", "dicom")
# Shown by default when present. Any other column (e.g. DICOM header fields copied into a manifest)
# appears only when listed with --show-columns / DINOSEARCH_SHOW_COLUMNS or picked in the sidebar.
SAFE_COLUMNS = ("label", "view", "patient_id", "study_id")
HIDDEN_COLUMNS = ("rank", "score", "id", "path")  # shown in their own way, never as metadata
DEMO_COMMAND = (
    "dinosearch demo --images path/to/manifest.parquet --backbone dinov2_vits14 --weights random"
)


@dataclass(frozen=True)
class AppSettings:
    indexes: Path  # the folder holding index folders (indexes/NAME)
    reports: tuple[Path, ...]  # folders scanned for **/report.json
    show_columns: tuple[str, ...]  # metadata columns listed for display; () = SAFE_COLUMNS


def parse_settings(argv: Sequence[str], env: Mapping[str, str]) -> AppSettings:
    """``streamlit run streamlit_app.py -- --indexes DIR [--reports DIR] [--show-columns a,b]``.

    Flags win over ``DINOSEARCH_INDEXES`` / ``DINOSEARCH_REPORTS`` / ``DINOSEARCH_SHOW_COLUMNS``;
    reports default to ``reports/`` beside the indexes folder and in the working folder.
    """
    p = argparse.ArgumentParser(add_help=False)
    for flag in ("--indexes", "--reports", "--show-columns"):
        p.add_argument(flag, default=None)
    args, _ = p.parse_known_args(list(argv))
    indexes = Path(args.indexes or env.get("DINOSEARCH_INDEXES") or "indexes")
    given = args.reports or env.get("DINOSEARCH_REPORTS")
    reports = [Path(given)] if given else [indexes.parent / "reports", Path("reports")]
    unique = tuple(dict.fromkeys(p.resolve() for p in reports))
    shown = args.show_columns or env.get("DINOSEARCH_SHOW_COLUMNS") or ""
    return AppSettings(indexes, unique, tuple(c.strip() for c in shown.split(",") if c.strip()))


@dataclass(frozen=True)
class IndexInfo:
    """What an index folder's live manifest says, read without loading FAISS."""

    path: Path
    version: str
    manifest: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def backbone(self) -> dict[str, Any]:
        return dict(self.manifest["backbone"])

    @property
    def random_init(self) -> bool:
        return bool(self.backbone.get("random_init"))

    @property
    def adapter(self) -> str | None:
        return (self.manifest.get("adapter") or {}).get("fingerprint")

    @property
    def images_key(self) -> tuple[Any, ...]:
        """Which images (and in which batches) the index holds: equal for a raw/adapted pair."""
        sources = [self.manifest["features"], *self.manifest.get("appended", [])]
        return tuple(s.get("images") or (s.get("path"), s.get("checksum")) for s in sources)

    def describe(self) -> dict[str, str]:
        """Display rows: backbone, weights, adapter, size, creation date, version."""
        b = self.backbone
        weights = "random init (UNTRAINED)" if self.random_init else str(b.get("weights"))
        pre = b.get("preprocess") or {}
        return {
            "backbone": f"{b.get('name')} ({pre.get('image_size', '?')} px, {b.get('pooling')})",
            "weights": weights,
            "adapter": self.adapter or "none (raw backbone vectors)",
            "size": f"{self.manifest['count']:,} images · {self.manifest['dim']}-d · "
            f"{self.manifest.get('index_type')}",
            "created": str(self.manifest.get("created", "?")).replace("T", " "),
            "version": self.version,
        }


def read_index_info(path: Path) -> IndexInfo:
    version = current_version(path)
    manifest = read_json(path / VERSIONS / version / "manifest.json")
    if manifest.get("kind") != "index":
        raise ValueError(f"{path}/{VERSIONS}/{version}/manifest.json is not an index manifest")
    return IndexInfo(path.resolve(), version, manifest)


def discover_indexes(root: Path) -> tuple[list[IndexInfo], list[str]]:
    """Index folders directly under ``root`` (those with a ``current`` pointer), and problems."""
    found, problems = [], []
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    for folder in folders:
        if not (folder / "current").is_file():
            continue
        try:
            found.append(read_index_info(folder))
        except (OSError, ValueError, KeyError) as e:
            problems.append(f"{folder.name}: {e}")
    return found, problems


@dataclass(frozen=True)
class IndexPair:
    raw: IndexInfo
    adapted: IndexInfo

    @property
    def label(self) -> str:
        return f"{self.raw.name}  ↔  {self.adapted.name}"


def pair_problem(raw: IndexInfo, adapted: IndexInfo) -> str | None:
    """Why ``raw`` and ``adapted`` cannot be compared side by side, or None."""
    if raw.adapter:
        return f"{raw.name} was built with an adapter; the raw side needs an index without one"
    if not adapted.adapter:
        return f"{adapted.name} has no adapter; the adapted side needs an index built with one"
    if raw.backbone["fingerprint"] != adapted.backbone["fingerprint"]:
        return (
            f"{raw.name} uses backbone {raw.backbone['fingerprint']!r} but {adapted.name} uses "
            f"{adapted.backbone['fingerprint']!r}; pair indexes made by the same backbone"
        )
    if raw.images_key != adapted.images_key:
        return (
            f"{raw.name} and {adapted.name} index different images; build both from the same "
            "`dinosearch embed` features folder"
        )
    return None


def pair_indexes(infos: Sequence[IndexInfo]) -> list[IndexPair]:
    """Every (raw, adapted) pair of the same images and backbone, newest adapted index first."""
    pairs = [
        IndexPair(r, a) for r in infos for a in infos if r is not a and pair_problem(r, a) is None
    ]
    return sorted(pairs, key=lambda p: str(p.adapted.manifest.get("created", "")), reverse=True)


@dataclass(frozen=True)
class EvalReport:
    folder: Path
    meta: dict[str, Any]
    result: dict[str, Any]
    stale: bool  # an index was republished since the report was made

    @property
    def plot(self) -> Path | None:
        png = self.folder / "report.png"
        return png if png.is_file() else None


def find_report(pair: IndexPair, folders: Sequence[Path]) -> EvalReport | None:
    """The newest ``**/report.json`` whose raw and adapted index paths are this pair's."""
    best: tuple[str, EvalReport] | None = None
    for path in (f for folder in folders if folder.is_dir() for f in folder.rglob("report.json")):
        try:
            data = read_json(path)
            meta = data["meta"]
            raw, adapted = meta["raw_index"], meta["adapted_index"]
            if (Path(raw["path"]), Path(adapted["path"])) != (pair.raw.path, pair.adapted.path):
                continue
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not an eval report of ours
        stale = (raw.get("version"), adapted.get("version")) != (
            pair.raw.version,
            pair.adapted.version,
        )
        report = EvalReport(path.parent, meta, data["result"], stale)
        if best is None or str(meta.get("created", "")) > best[0]:
            best = (str(meta.get("created", "")), report)
    return None if best is None else best[1]


def report_table(result: dict[str, Any]) -> pd.DataFrame:
    """Rows metric@k, columns methods then 'Δ adapted − X', cells 'mean [lo, hi]'."""
    from dinosearch.report import METRIC_NAMES, TABLE_METRICS

    overall, methods = result["overall"], result["methods"]
    diffs = [f"adapted-{m}" for m in methods if f"adapted-{m}" in overall]
    names = {**{m: m for m in methods}, **{d: "Δ " + d.replace("-", " − ") for d in diffs}}
    rows = {
        f"{METRIC_NAMES[metric]}@{k}": {
            names[m]: _ci(overall[m][f"{metric}@{k}"], m in diffs) for m in methods + diffs
        }
        for metric in TABLE_METRICS
        for k in result["ks"]
        if f"{metric}@{k}" in overall[methods[0]]
    }
    return pd.DataFrame.from_dict(rows, orient="index")


def report_verdicts(result: dict[str, Any]) -> list[str]:
    """'adapted vs raw: precision@10 +0.048 [+0.026, +0.067] → better' for each comparison."""
    key = f"precision@{10 if 10 in result['ks'] else max(result['ks'])}"
    lines = []
    for name, s in (
        (f"adapted-{m}", result["overall"].get(f"adapted-{m}")) for m in result["methods"]
    ):
        if s is not None and s[key].get("mean") is not None:
            word = (
                "better"
                if s[key]["lo"] > 0
                else "worse"
                if s[key]["hi"] < 0
                else "no clear difference"
            )
            lines.append(f"adapted vs {name.split('-', 1)[1]}: {key} {_ci(s[key], True)} → {word}")
    return lines


def report_curve(result: dict[str, Any], metric: str = "precision") -> pd.DataFrame:
    """(ks, methods) means of ``metric``@k, for a line chart."""
    overall = result["overall"]
    return pd.DataFrame(
        {m: [overall[m][f"{metric}@{k}"]["mean"] for k in result["ks"]] for m in result["methods"]},
        index=pd.Index(result["ks"], name="k"),
    )


def _ci(s: dict[str, Any], signed: bool) -> str:
    if s.get("mean") is None:
        return "n/a"
    f = "{:+.3f}" if signed else "{:.3f}"
    return f"{f.format(s['mean'])} [{f.format(s['lo'])}, {f.format(s['hi'])}]"


@dataclass
class PairResult:
    raw: SearchResult
    adapted: SearchResult

    def shared_ids(self) -> set[str]:
        """Metadata ids present in both result lists."""
        return set(self.raw.rows["id"].astype(str)) & set(self.adapted.rows["id"].astype(str))


class SearchPair:
    """A raw and an adapted Searcher sharing one backbone: one forward pass feeds both."""

    def __init__(self, raw_dir: str | Path, adapted_dir: str | Path, device: str = "cpu") -> None:
        from dinosearch.search import Searcher

        self.raw = Searcher(raw_dir, device=device)
        self.adapted = Searcher(adapted_dir, backbone=self.raw.backbone, device=device)
        self._lock = threading.Lock()  # Streamlit sessions share this object across threads
        self._check()

    def _check(self) -> None:
        problem = pair_problem(self.info(self.raw), self.info(self.adapted))
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
    ) -> PairResult:
        """Top-k of both indexes for one image: one backbone forward, two searches."""
        self.refresh()
        with self._lock:
            features = self.raw.image_features([image])  # (1, D) backbone features
            found = [
                s.search_vectors(
                    s.embed_features(features), k, filters=filters, exclude_group=exclude_group
                )[0]
                for s in (self.raw, self.adapted)
            ]
        return PairResult(*found)


def read_query(data: bytes, name: str, max_mb: int = MAX_UPLOAD_MB) -> Image.Image:
    """An uploaded file's bytes → grayscale/RGB image (DICOM windowed); ImageReadError if not."""
    if len(data) > max_mb * 2**20:
        raise ImageReadError(
            name, f"file is {len(data) / 2**20:.0f} MB, over the {max_mb} MB limit"
        )
    return read_image(data, name=name)


def model_view(image: Image.Image, pre: Preprocess) -> Image.Image:
    """The query as the backbone sees it: short side resized, centre-cropped (before normalising)."""
    from torchvision.transforms import v2

    from dinosearch.transforms import interpolation

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


def agreement(result: PairResult, query_label: Any, k: int) -> dict[str, float | None]:
    return {
        "overlap": overlap_at_k(result.raw.rows["id"], result.adapted.rows["id"], k),
        "raw_precision": label_precision(result.raw.rows["label"], query_label, k),
        "adapted_precision": label_precision(result.adapted.rows["label"], query_label, k),
    }


def display_columns(columns: Sequence[str], listed: Sequence[str]) -> list[str]:
    """Columns shown by default: those listed explicitly, else the safe ones present."""
    wanted = listed or SAFE_COLUMNS
    return [c for c in wanted if c in columns and c not in HIDDEN_COLUMNS]


def filter_options(metadata: pd.DataFrame, columns: Sequence[str], most: int = 30) -> dict:
    """Values of the displayed columns worth filtering on (2 to ``most`` distinct values)."""
    options = {}
    for c in columns:
        values = metadata[c].dropna().unique()
        if 2 <= len(values) <= most:
            options[c] = sorted(values.tolist(), key=str)
    return options
