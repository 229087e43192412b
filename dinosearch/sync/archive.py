"""``dinosearch sync``: one idempotent, crash-safe pass (or a watch loop) that brings a features
folder and its raw and adapted indexes in step with a DICOMweb archive.

A pass: list the archive (QIDO-RS); embed the instances the features folder lacks into
``FEATURES.sync-new/`` (resumable shards in ``FEATURES.sync-new.partial/``); rewrite the features
folder whole as kept old rows + new rows (``merge``); then publish a new version of every index
whose live version was built from other features. A kill at any instant leaves each folder old or
new; the next pass finishes what is missing. A pass with nothing new publishes nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pandas as pd

from dinosearch.backbones import Backbone, load_backbone
from dinosearch.core.config import to_dict
from dinosearch.core.lock import writing
from dinosearch.core.runtime import resolve_device
from dinosearch.core.storage import clean_leftovers, read_json, remove_dir
from dinosearch.features.folder import FeatureSet, embed_to_folder
from dinosearch.index import build_index
from dinosearch.index.publish import current_version
from dinosearch.inputs.dicomweb import load_archive_records
from dinosearch.inputs.records import records_fingerprint
from dinosearch.sync.config import SyncConfig
from dinosearch.sync.merge import merge_features, open_features, read_skipped


@dataclass
class SyncResult:
    """What one pass changed: ids added and removed, index versions published ({folder: version})."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: int = 0
    published: dict[str, str] = field(default_factory=dict)


def _backbone(config: SyncConfig, old: FeatureSet | None) -> Backbone:
    if old is not None:  # the backbone the folder was made with, whatever the flags say
        args = dict(old.manifest["backbone"]["load_args"])
    else:
        args = {"name": config.backbone, "weights": config.weights}
        args |= {"image_size": config.image_size, "seed": config.seed}
    return _load(json.dumps(args, sort_keys=True), str(resolve_device(config.device)))


@lru_cache(maxsize=1)
def _load(args: str, device: str) -> Backbone:
    """Loaded once per process: a --watch loop does not reload the weights every round."""
    return load_backbone(**json.loads(args), device=device)


def _embed_new(records: pd.DataFrame, config: SyncConfig, old: FeatureSet | None) -> Path | None:
    """Embed ``records`` into ``FEATURES.sync-new`` (keeping a killed pass's shards); None if empty."""
    out = Path(config.features)
    new_dir = out.with_name(out.name + ".sync-new")
    if records.empty:
        return None
    partial = new_dir.with_name(new_dir.name + ".partial")
    plan = partial / "plan.json"
    if plan.is_file() and read_json(plan).get("images") != records_fingerprint(records):
        remove_dir(partial)  # the archive changed since the killed pass: start this batch anew
    embed_to_folder(
        records,
        _backbone(config, old),
        new_dir,
        shard_size=config.shard_size,
        resume=True,
        batch_size=config.batch_size,
        num_workers=config.workers,
        source=config.archive,
        progress=config.progress,
    )
    return new_dir


def _stale(index: Path, features: FeatureSet) -> bool:
    """True when ``index`` has no live version built from exactly these features."""
    try:
        manifest = read_json(index / "versions" / current_version(index) / "manifest.json")
    except (FileNotFoundError, ValueError):
        return True
    built_from = manifest.get("features", {}).get("checksum")
    return (
        bool(manifest.get("appended"))
        or built_from != features.manifest["checksums"]["features.npy"]
    )


def _forget(config: SyncConfig, ids: list[str]) -> None:
    """``sync.erase.forget``: the rows of ``ids`` out of the features folder, of every version of
    the indexes that exist, and the view cache (docs/pacs.md: what erasure guarantees)."""
    from dinosearch.sync.erase import forget

    indexes = [Path(p) for p in (config.index, config.adapted_index) if p is not None]
    live = [p for p in indexes if (p / "current").is_file()]
    forget(live, ids, features_dirs=[Path(config.features)])


def sync_once(config: SyncConfig) -> SyncResult:
    """One pass (see module docstring); returns what it added, removed and published.

    Holds the features folder's ``sync`` lock for the whole pass (a second ``sync`` of the folder
    waits), and the folder's own writer lock while it tidies and while it swaps the folder in.
    """
    out = Path(config.features)
    with writing(out, "sync", scope="sync-pass"):
        with writing(out, "sync"):
            clean_leftovers(out)  # what a killed pass or embed left mid-swap
        for suffix in (".sync-new", ".sync-new.partial", ".sync"):
            clean_leftovers(out.with_name(out.name + suffix))
        for suffix in (".sync-new", ".sync"):  # a finished batch or merge of a killed pass: redo it
            remove_dir(out.with_name(out.name + suffix))
        result, features = _bring_features(config, out)
        if features is None or features.manifest["count"] == 0:
            return result  # nothing to index (an empty archive or every film undecodable)
        _publish_stale(config, out, features, result)
        return result


def _bring_features(config: SyncConfig, out: Path) -> tuple[SyncResult, FeatureSet | None]:
    """Erase what the archive dropped, embed what it added, merge; the pass's result and folder
    (None: an empty archive and no folder yet)."""
    records, _ = load_archive_records(config.archive)
    old = open_features(out)
    have = set(old.metadata["id"].astype(str)) if old is not None and len(old.metadata) else set()
    skipped_before = set(read_skipped(out)["path"]) if old is not None else set()
    listed = set(records["id"])
    result = SyncResult(removed=sorted(have - listed))
    if result.removed:  # erased from the features folder, every index version and the view cache
        _forget(config, result.removed)
        old = open_features(out)
    todo = records[~records["id"].isin(have) & ~records["path"].isin(skipped_before)]
    result.added = todo["id"].tolist()
    if todo.empty:  # nothing new: the folder as it is (None before any film arrived)
        result.skipped = int(old.manifest.get("skipped", 0)) if old is not None else 0
        return result, old
    new_dir = _embed_new(todo.reset_index(drop=True), config, old)
    features = merge_features(
        out, listed, new_dir, skipped_paths=set(records["path"]), config=to_dict(config)
    )
    if new_dir is not None:
        remove_dir(new_dir)
    added = set(features.metadata["id"].astype(str)) if len(features.metadata) else set()
    result.added = [i for i in result.added if i in added]
    result.skipped = int(features.manifest.get("skipped", 0))
    return result, features


def _publish_stale(config: SyncConfig, out: Path, features: FeatureSet, result: SyncResult) -> None:
    """A new version of each index (raw, adapted) whose live one was built from other features."""
    pairs: list[tuple[Path, str | None]] = [(Path(config.index), None)]
    if config.adapted_index is not None:
        pairs.append((Path(config.adapted_index), config.adapter))
    for index, adapter in pairs:
        if _stale(index, features):
            handle = build_index(out, index, adapter_dir=adapter, keep=config.keep)
            result.published[str(index)] = handle.version


def sync_archive(
    config: SyncConfig, report: Callable[[SyncResult], None] = lambda r: None
) -> list[SyncResult]:
    """``sync_once``, then with ``config.watch`` again every ``watch`` seconds (``max_rounds``)."""
    results = []
    while True:
        began = time.monotonic()
        results.append(sync_once(config))
        report(results[-1])
        rounds_done = config.max_rounds is not None and len(results) >= config.max_rounds
        if config.watch is None or rounds_done:
            return results
        time.sleep(max(0.0, config.watch - (time.monotonic() - began)))
