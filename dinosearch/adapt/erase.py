"""Erase view-cache entries: every cached folder made by the given backbones is deleted whole.

A cache entry stores (n, K, D) view features by position in the image list it was made from, not
by id, so the entries that hold a given film cannot be told apart: all entries of the backbones
concerned go (``dinosearch train`` recomputes them), with what killed writers left beside them.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path

from dinosearch.adapt.view_cache import default_cache_dir
from dinosearch.core.storage import pid_alive, read_json, remove_dir

_LEFTOVER = re.compile(r"^\..+\.(tmp|deleting|old)-(\d+)$")


def drop_cache_entries(cache_dir: str | Path | None, backbones: Collection[str]) -> list[str]:
    """Delete the entries of ``cache_dir`` (None: the default) made by any of ``backbones``
    (fingerprints), an entry whose key cannot be read, and dead writers' leftovers; return their names."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if not root.is_dir():
        return []
    removed = []
    for entry in sorted(root.iterdir()):
        m = _LEFTOVER.match(entry.name)
        if m:
            if not pid_alive(int(m.group(2))):
                remove_dir(entry)
                removed.append(entry.name)
            continue
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        try:
            backbone = read_json(entry / "key.json").get("backbone")
        except (FileNotFoundError, ValueError):
            backbone = None  # damaged or half-written: it may hold anything
        if backbone is None or backbone in backbones:
            remove_dir(entry)
            removed.append(entry.name)
    return removed
