"""Kill suite driver: SIGKILL folder swaps, `dinosearch index` and `dinosearch embed` at every rename,
every deletion step and seeded random instants, then check what survived; prints a JSON summary.

Run by tests/test_kill.py as ``python tests/kill_driver.py WORK SEED SCENARIO…`` in a fresh
interpreter with one thread per library, so that forked children are safe and cheap.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from concurrency import concurrent_scenario
from forking import DELETES, RENAMES, Outcome, Trap, count_calls, in_child
from helpers import TINY_CLI, clustered_vectors, write_features_folder
from PIL import Image
from remove_kill import remove_scenario

import dinosearch.core.storage as storage
from dinosearch.backbones import load_backbone
from dinosearch.cli import main as cli
from dinosearch.features.folder import load_features
from dinosearch.index import open_index

RANDOM_KILLS = 8  # per command, at seeded random instants of a clean run's duration
K = 5


class Tally:
    """Cases tried, kills landed, and every failed check (with the case that failed)."""

    def __init__(self) -> None:
        self.cases, self.kills, self.completed = 0, 0, 0
        self.by_kind: dict[str, int] = {}
        self.failures: list[str] = []

    def killed(self, case: str, outcome: Outcome) -> bool:
        """Record a killed run; False (and a failure unless it simply finished first) otherwise."""
        self.cases += 1
        if outcome.status == "killed":
            self.kills += 1
            kind = case.partition(" killed at ")[2].split()[0]  # rename, delete or random
            self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
            return True
        if outcome.status == "ok":
            self.completed += 1  # a random instant after the run ended
        else:
            self.fail(case, f"{outcome.status}: {outcome.value}")
        return False

    def check(self, case: str, ok: bool, what: str) -> None:
        if not ok:
            self.fail(case, what)

    def fail(self, case: str, what: str) -> None:
        self.failures.append(f"{case}: {str(what)[-800:]}")

    def summary(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "kills": self.kills,
            "by_kind": self.by_kind,
            "completed": self.completed,
            "failures": self.failures,
        }


def leftovers(folder: Path, name: str) -> list[str]:
    """Hidden ``.NAME.*`` entries, ``NAME.partial`` and staging/temporary files under ``folder``."""
    lock = (f".{name}.lock", f".{name}.lock.holder")  # the writer lock stays by design (core.lock)
    found = [
        p
        for p in folder.iterdir()
        if p.name.startswith((f".{name}.", f"{name}.partial")) and p.name not in lock
    ]
    inner = folder / name
    if inner.is_dir():
        found += list(inner.rglob(".*"))
    return sorted(str(p.relative_to(folder)) for p in found)


def kill_points(
    tally: Tally, run: Callable[[], Any], reset: Callable[[], None], case: str
) -> list[tuple[str, Trap | None]]:
    """A trap before and after every rename, and before every deletion step, of a clean ``run``."""
    points: list[tuple[str, Trap | None]] = []
    for names, label, sides in ((RENAMES, "rename", (False, True)), (DELETES, "delete", (False,))):
        reset()
        outcome, calls = count_calls(run, names)
        tally.check(f"{case} clean run", outcome.status == "ok", str(outcome.value))
        for n in range(1, calls + 1):
            for after in sides:
                where = f"{label} {n}/{calls} {'after' if after else 'before'}"
                points.append((where, Trap(names, n, after=after)))
    return points


def tree(folder: Path) -> dict[str, bytes] | None:
    if not folder.is_dir():
        return None
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def plant(folder: Path, files: dict[str, bytes]) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)


OLD = {"a.txt": b"old a", "sub/b.bin": b"old b" * 100}
NEW = {"a.txt": b"new a", "sub/b.bin": b"new b" * 90, "c.txt": b"new c"}


def replace_scenario(work: Path, rng: random.Random) -> dict[str, Any]:
    """``replace_dir`` killed at each step, with the atomic swap and with the rename-aside fallback."""
    tally = Tally()
    for mode in ("exchange", "fallback"):
        _replace_kills(tally, work / mode, mode)
    return tally.summary()


def _replace_kills(tally: Tally, base: Path, mode: str) -> None:
    target, staged = base / "out", base / "staged"

    def reset() -> None:
        shutil.rmtree(base, ignore_errors=True)
        plant(target, OLD)
        plant(staged, NEW)

    def swap() -> None:
        if mode == "fallback":
            storage.exchange = lambda a, b: False  # as on a filesystem that cannot swap
        storage.replace_dir(staged, target)

    for where, trap in kill_points(tally, swap, reset, mode):
        case = f"replace_dir ({mode}) killed at {where}"
        reset()
        if not tally.killed(case, in_child(swap, trap=trap)):
            continue
        if mode == "exchange":  # the swap is atomic: no instant without a folder
            tally.check(case, tree(target) in (OLD, NEW), "target neither old nor new")
        storage.clean_leftovers(target)  # what the next run does first
        tally.check(case, tree(target) in (OLD, NEW), "after recovery: neither old nor new")
        plant(staged, NEW)
        again = in_child(swap)
        tally.check(case, again.status == "ok" and tree(target) == NEW, f"rerun: {again}")
        tally.check(case, not leftovers(base, "out"), f"leftovers {leftovers(base, 'out')}")


def index_scenario(work: Path, rng: random.Random, backbone_info: dict) -> dict[str, Any]:
    """`dinosearch index` killed while publishing a version built from other features."""
    tally = Tally()
    old_f, new_f = work / "features-old", work / "features-new"
    meta = {"id": [f"i{j:03d}" for j in range(60)], "path": [f"/x/{j}.png" for j in range(60)]}
    write_features_folder(
        old_f, clustered_vectors(60, 32, seed=1)[:40] * 3, _head(meta, 40), backbone_info
    )
    write_features_folder(new_f, clustered_vectors(60, 32, seed=2) * 3, meta, backbone_info)
    template, idx = work / "template", work / "idx"
    for _ in range(3):  # three versions: the next publish also prunes one. In this process, so
        cli(["index", "--features", str(old_f), "--out", str(template)])  # children import nothing
    queries = clustered_vectors(K, 32, seed=3)

    def answer(folder: Path) -> tuple[str, list, list]:
        h = open_index(folder)
        scores, ids = h.search(queries, K)
        return h.manifest["features"]["path"], ids.tolist(), scores.tolist()

    expected = {}
    for f in (old_f, new_f):
        scratch = work / f"expect-{f.name}"
        cli(["index", "--features", str(f), "--out", str(scratch)])
        got = answer(scratch)
        expected[got[0]] = got
    build = ["index", "--features", str(new_f), "--out", str(idx)]

    def reset() -> None:
        shutil.rmtree(idx, ignore_errors=True)
        shutil.copytree(template, idx)

    def check() -> tuple[Any, int, Any, list[str]]:
        return answer(idx), cli(build), answer(idx), leftovers(work, "idx")

    olds = list(expected.values())
    kill_and_check(
        tally, "index", lambda: cli(build), reset, check, olds, expected[str(new_f)], rng
    )
    return tally.summary()


def _head(meta: dict[str, list], n: int) -> dict[str, list]:
    return {k: v[:n] for k, v in meta.items()}


def embed_scenario(work: Path, rng: random.Random) -> dict[str, Any]:
    """`dinosearch embed` killed while replacing a folder made from fewer images; then --resume."""
    tally = Tally()
    images = work / "images"
    images.mkdir(parents=True)
    for i in range(8):
        pixels = np.random.default_rng(i).integers(0, 255, (40 + 4 * i, 48), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"film{i}.png")
    flags = [*TINY_CLI, "--shard-size", "2", "--batch-size", "2", "--workers", "0", "--no-progress"]
    out, template = work / "out", work / "template"

    def embed(folder: Path, *extra: str) -> int:
        return cli(["embed", "--images", str(images), "--out", str(folder), *flags, *extra])

    def features(folder: Path) -> tuple[int, bytes]:
        fs = load_features(folder, verify=True)
        return len(fs.features), np.asarray(fs.features).tobytes()

    embed(template, "--limit", "6")  # in this process, so that children import nothing lazily
    embed(work / "reference")
    expected = [features(f) for f in (template, work / "reference")]

    def reset() -> None:
        for p in work.iterdir():
            if p.name.startswith((".out", "out")):
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        shutil.copytree(template, out)

    def check() -> tuple[Any, int, Any, list[str]]:
        return features(out), embed(out, "--resume"), features(out), leftovers(work, "out")

    kill_and_check(tally, "embed", lambda: embed(out), reset, check, expected, expected[1], rng)
    return tally.summary()


def kill_and_check(
    tally: Tally,
    name: str,
    run: Callable[[], Any],
    reset: Callable[[], None],
    check: Callable[[], tuple[Any, int, Any, list[str]]],
    olds: list[Any],
    new: Any,
    rng: random.Random,
    random_kills: int = RANDOM_KILLS,
    every_delete: int = 1,
    trapped: int | None = None,
) -> None:
    """Kill ``run`` at every rename and deletion step and at random instants, each time from
    ``reset``; then ``check`` gives the answers now (one of ``olds``), the re-run's exit status,
    the answers after it (``new``) and what was left behind (nothing). ``trapped``: try only that
    many of the rename/deletion points, drawn at random (for commands with very many)."""
    points = kill_points(tally, run, reset, name)
    points = [  # only every ``every_delete``-th deletion step: a run that deletes many files
        (where, trap)
        for where, trap in points
        if not where.startswith("delete") or trap is None or trap.at % every_delete == 0
    ]
    if trapped is not None and len(points) > trapped:
        points = rng.sample(points, trapped)
    reset()
    clean = in_child(run).seconds
    points += [(f"random instant {r}", None) for r in range(random_kills)]
    for where, trap in points:
        case = f"{name} killed at {where}"
        reset()
        delay = None if trap else rng.uniform(0, 0.8 * clean)
        if not tally.killed(case, in_child(run, trap=trap, kill_after=delay)):
            continue
        checked = in_child(check)
        tally.check(case, checked.status == "ok", f"after the kill: {checked.value}")
        if checked.status == "ok":
            now, rerun, final, litter = checked.value
            tally.check(case, now in olds, "answers of neither the old nor the new folder")
            tally.check(case, rerun == 0 and final == new, f"re-run: status {rerun}, other answers")
            tally.check(case, not litter, f"leftovers {litter}")


def main(argv: list[str]) -> int:
    work, seed, scenarios = Path(argv[0]), int(argv[1]), argv[2:]
    rng = random.Random(seed)
    info = load_backbone("dinov2_tiny_test", "random", image_size=56).info()
    runs: dict[str, Callable[[Path], dict[str, Any]]] = {
        "replace": lambda w: replace_scenario(w, rng),
        "index": lambda w: index_scenario(w, rng, info),
        "embed": lambda w: embed_scenario(w, rng),
        "concurrent": lambda w: concurrent_scenario(w, info),
        "remove": lambda w: remove_scenario(w, rng, info),
        "sync": lambda w: __import__("kill_sync").sync_scenario(w, rng),  # needs Orthanc
    }
    summary = {}
    for name in scenarios:
        (work / name).mkdir(parents=True)
        began = time.perf_counter()
        summary[name] = runs[name](work / name)
        summary[name]["seconds"] = round(time.perf_counter() - began, 1)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
