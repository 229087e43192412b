"""Kill scenario "remove" (run by kill_driver.py): `dinosearch remove` SIGKILLed before and after
every rename, at every 4th deletion step and at 32 seeded random instants, while it rewrites two
features folders, publishes an index version, deletes three older ones and a view-cache entry.

After each kill: every folder is whole (the index answers as the old or the new version, each
features folder loads with checksums as the old or the new one, never an index newer than its
features); the re-run exits 0 and leaves exactly the expected index, no byte of the removed rows
anywhere (features, cache, all versions, leftovers) and no hidden leftovers but the lock files.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from helpers import clustered_vectors, write_features_folder

from dinosearch.cli import main as cli
from dinosearch.core.storage import write_json
from dinosearch.features.folder import load_features
from dinosearch.index import build_index, list_versions, open_index
from dinosearch.index.handle import iter_sources

RANDOM_KILLS = 32  # ≥ 20 of them land before the run ends
REMOVED = ["r003", "r017", "r018", "r052"]


def _folders(case: Path, info: dict) -> np.ndarray:
    """Features A (40 rows) and B (60), index idx: A, A, B appended (3 versions), a cache entry."""
    feats = clustered_vectors(60, 32, seed=4) * 3
    meta = {"id": [f"r{j:03d}" for j in range(60)], "path": [f"/f/r{j:03d}.png" for j in range(60)]}
    write_features_folder(case / "A", feats[:40], {k: v[:40] for k, v in meta.items()}, info)
    write_features_folder(case / "B", feats, meta, info)
    for _ in range(2):
        build_index(case / "A", case / "idx")
    build_index(case / "B", case / "idx", append=True, skip_existing=True)
    (case / "cache" / "tiny-clean-1").mkdir(parents=True)
    np.save(case / "cache" / "tiny-clean-1" / "features.npy", feats[:, None])
    write_json(case / "cache" / "tiny-clean-1" / "key.json", {"backbone": info["fingerprint"]})
    return feats


def _state(case: Path) -> tuple[str, str, str]:
    """("old"|"new"|what is wrong) for the index, A and B as they are now."""
    labels = []
    for name, old, new in (("A", 40, 37), ("B", 60, 56)):
        try:
            n = len(load_features(case / name, verify=True).features)
            labels.append({old: "old", new: "new"}.get(n, f"{n} rows"))
        except (ValueError, FileNotFoundError) as e:
            labels.append(f"broken: {e}")
    h = open_index(case / "idx")  # verifies checksums
    ids = set(h.metadata["id"])
    index = "old" if ids >= set(REMOVED) else "new" if not ids & set(REMOVED) else "mixed"
    return index, labels[0], labels[1]


def _final(case: Path, needles: list[bytes]) -> tuple[Any, ...]:
    h = open_index(case / "idx")
    sources = list(iter_sources(h.manifest))  # consistent with the rewritten features
    found = [
        str(p.relative_to(case))
        for p in case.rglob("*")
        if p.is_file() and any(n in p.read_bytes() for n in needles)
    ]
    litter = [
        str(p.relative_to(case))
        for p in case.rglob(".*")
        if not p.name.endswith((".lock", ".lock.holder"))
    ]
    return (
        h.metadata["id"].tolist(),
        sum(len(ids) for _, _, ids in sources),
        len(list_versions(case / "idx")),  # one; its name depends on where a kill fell
        found,
        sorted(litter),
        sorted(p.name for p in (case / "cache").iterdir()),
    )


def remove_scenario(work: Path, rng: random.Random, info: dict) -> dict[str, Any]:
    from kill_driver import Tally, kill_and_check  # imported here: kill_driver imports this module

    tally = Tally()
    case, template = work / "case", work / "template"
    feats = _folders(case, info)
    shutil.copytree(case, template)
    rows = [int(r[1:]) for r in REMOVED]
    needles = [r.encode() for r in REMOVED] + [feats[i].astype(np.float32).tobytes() for i in rows]
    ids_file = work / "ids.txt"
    ids_file.write_text("\n".join(REMOVED))
    argv = ["remove", "--index", str(case / "idx"), "--ids", str(ids_file)]
    argv += ["--cache-dir", str(case / "cache")]

    def reset() -> None:
        shutil.rmtree(case, ignore_errors=True)
        shutil.copytree(template, case)

    reset()
    assert cli(argv) == 0  # in this process, so that children import nothing lazily
    expected = _final(case, needles)
    assert not expected[3] and not expected[4] and len(expected[0]) == 56, expected

    def check() -> tuple[Any, int, Any, list[str]]:
        now = _state(case)
        return now, cli(argv), _final(case, needles), []

    olds = [
        (index, a, b)
        for index in ("old", "new")
        for a in ("old", "new")
        for b in ("old", "new")
        if index == "old" or (a, b) == ("new", "new")  # features are rewritten before the index
    ]
    kill_and_check(
        tally, "remove", lambda: cli(argv), reset, check, olds, expected, rng, RANDOM_KILLS, 4
    )
    return tally.summary()
