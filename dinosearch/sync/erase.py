"""The erasure job: drop films (by id) from indexes, the features folders they name and the view cache.

Order: features folders first, then each index (a new version, then every older one deleted), then
the view cache. A kill at any point leaves every folder usable, and a re-run finishes the job:
indexes take their features entries from the folders as they are now (see ``index.erase``), and
the view-cache entries of those features' backbones are deleted on every run (they are keyed by
image-list position, not id, and a re-run's ids may no longer be found anywhere else).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from dinosearch.adapt.erase import drop_cache_entries
from dinosearch.core.lock import writing
from dinosearch.core.storage import read_json
from dinosearch.features.erase import drop_rows
from dinosearch.features.folder import load_features
from dinosearch.index.erase import IndexErasure, erase_from_index
from dinosearch.index.handle import open_index
from dinosearch.index.publish import VERSIONS, list_versions
from dinosearch.search.filters import RowFilters
from dinosearch.sync.remove_config import RemoveConfig


@dataclass(frozen=True)
class ForgetResult:
    """What ``forget`` removed where."""

    ids: int  # distinct ids asked for
    features: tuple[tuple[str, int], ...]  # (features folder, rows dropped now)
    indexes: tuple[IndexErasure, ...]
    cache_entries: tuple[str, ...]  # view-cache folders deleted


def ids_where(index_dirs: Sequence[str | Path], where: str) -> list[str]:
    """Ids of the rows of the indexes' live versions that pass filter ``where`` (search's syntax,
    e.g. ``"patient_id == 'P1'"``), sorted, each once."""
    found: set[str] = set()
    for index_dir in index_dirs:
        handle = open_index(index_dir, verify=False)
        mask = RowFilters(handle).mask(where)
        if mask is not None:
            found.update(handle.metadata["id"].astype(str)[mask].tolist())
    return sorted(found)


def features_of(index_dirs: Sequence[str | Path]) -> list[Path]:
    """The features folders any version of the indexes names (first and appended), each once."""
    folders: dict[Path, None] = {}
    for index_dir in index_dirs:
        live = open_index(index_dir, verify=False).manifest
        older = []
        for v in list_versions(index_dir):
            try:
                if v != live["version"]:
                    older.append(read_json(Path(index_dir) / VERSIONS / v / "manifest.json"))
            except FileNotFoundError:
                continue  # pruned meanwhile by another writer
        for m in (live, *older):
            for src in (m["features"], *m.get("appended", [])):
                if Path(src["path"]).exists() or m is live:  # an older build's folder may be gone
                    folders[Path(src["path"])] = None
    return list(folders)


def forget(
    index_dirs: Sequence[Path],
    ids: Collection[str],
    *,
    features_dirs: Sequence[Path] | None = None,
    cache_dir: Path | None = None,
) -> ForgetResult:
    """Remove the rows of ``ids`` from every index, every features folder they name (and
    ``features_dirs``) and the view cache; delete every older index version.

    Args:
        index_dirs: index folders (``indexes/NAME``); all versions are scrubbed.
        ids: row ids (for archive films the SOP Instance UID).
        features_dirs: further features folders to drop the rows from.
        cache_dir: the view cache (None: ``$DINOSEARCH_CACHE/views`` or ``~/.cache/...``); every
            entry made by those features' backbones is deleted.
    Raises:
        ValueError: no index given; FileNotFoundError: an index or features folder is missing.
    """
    if not index_dirs and not features_dirs:
        raise ValueError("give at least one --index (or features folder) to remove rows from")
    wanted = {str(i) for i in ids}
    folders = list(dict.fromkeys([*features_of(index_dirs), *map(Path, features_dirs or [])]))
    backbones = {load_features(f, metadata=False).fingerprint for f in folders}
    dropped = []
    for folder in folders:  # one writer per folder: an `embed` or `index` into it waits
        with writing(folder, "remove"):
            dropped.append((str(folder), drop_rows(folder, wanted)))
    indexes = []
    for index_dir in index_dirs:
        with writing(Path(index_dir), "remove"):
            indexes.append(erase_from_index(index_dir, wanted))
    cache = tuple(drop_cache_entries(cache_dir, backbones))  # also on a re-run: see module doc
    return ForgetResult(len(wanted), tuple(dropped), tuple(indexes), cache)


def read_ids(path: str | Path) -> list[str]:
    """Ids from a text file, one per line (blank lines skipped)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f"--ids {path}: no such file; give a file of ids, one per line"
        ) from e
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(
            f"--ids {path}: unreadable ({e}); give a UTF-8 text file, one id a line"
        ) from e
    return [line.strip() for line in text.splitlines() if line.strip()]


def remove(config: RemoveConfig) -> ForgetResult:
    """``dinosearch remove``: the ids of ``config.ids`` (a file) or ``config.where`` (a filter), forgotten."""
    if (config.ids is None) == (config.where is None):
        raise ValueError("give exactly one of --ids FILE or --where FILTER")
    indexes = [Path(p) for p in config.index]
    where = str(config.where)
    ids = read_ids(config.ids) if config.ids is not None else ids_where(indexes, where)
    return forget(
        indexes,
        ids,
        features_dirs=[Path(p) for p in config.features],
        cache_dir=Path(config.cache_dir) if config.cache_dir else None,
    )
