"""Index folders and their eval reports on disk: find, describe and match raw with adapted (no FAISS, no torch)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dinosearch.core.storage import read_json
from dinosearch.index import VERSIONS, current_version


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
class Comparison:
    """A raw index and an adapted index of the same images, compared side by side."""

    raw: IndexInfo
    adapted: IndexInfo

    @property
    def label(self) -> str:
        return f"{self.raw.name}  ↔  {self.adapted.name}"


def comparison_problem(raw: IndexInfo, adapted: IndexInfo) -> str | None:
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


def find_comparisons(infos: Sequence[IndexInfo]) -> list[Comparison]:
    """Every (raw, adapted) pair of the same images and backbone, newest adapted index first."""
    pairs = [
        Comparison(r, a)
        for r in infos
        for a in infos
        if r is not a and comparison_problem(r, a) is None
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


def find_report(pair: Comparison, folders: Sequence[Path]) -> EvalReport | None:
    """The newest ``**/report.json`` whose raw and adapted index paths are this pair's."""
    best: tuple[str, EvalReport] | None = None
    for path in (f for folder in folders if folder.is_dir() for f in folder.rglob("report.json")):
        if path.parent.name.startswith("."):
            continue  # a report being written (.NAME.tmp-PID) or swapped out (.NAME.old-PID)
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
