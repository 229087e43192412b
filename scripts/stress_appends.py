"""Concurrent `index --append`s into one index: how many rows the writers lose.

    PYTHONPATH=. OMP_NUM_THREADS=1 python scripts/stress_appends.py --trials 50

Each trial copies a 6-row flat index and forks 2–4 processes (seeded) that each append 3 new rows
at once. It prints the appends made, those that failed, and the rows of appends that returned
normally but are missing from the final index (silently lost updates). Indexes live on /dev/shm
where there is one (fsync is free there). Needs the repository's tests/ (forking, helpers).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from forking import finish, start  # noqa: E402
from helpers import write_features_folder  # noqa: E402

from dinosearch.index import build_index, open_index  # noqa: E402

INFO = {"name": "synthetic", "fingerprint": "fp-synthetic"}


def _folder(root: Path, name: str, ids: list[str]) -> Path:
    rng = np.random.default_rng(len(name))
    meta = {"id": ids, "path": ids, "label": ["a"] * len(ids)}
    return write_features_folder(root / name, rng.normal(size=(len(ids), 8)), meta, INFO)


def run(trials: int, seed: int) -> dict[str, int]:
    """→ appends, failed, trials_with_loss, rows_lost (of appends that returned)."""
    shm = "/dev/shm" if Path("/dev/shm").is_dir() else None
    root = Path(tempfile.mkdtemp(dir=shm, prefix="dinosearch-stress-"))
    try:
        base = _folder(root, "base", [f"b{i}" for i in range(6)])
        extra = [_folder(root, f"x{k}", [f"x{k}_{i}" for i in range(3)]) for k in range(4)]
        build_index(base, root / "base_idx", index_type="flat", use_gpu=False)
        rng, counts = (
            np.random.default_rng(seed),
            dict.fromkeys(("appends", "failed", "trials_with_loss", "rows_lost"), 0),
        )
        for t in range(trials):
            out = root / f"i{t}"
            shutil.copytree(root / "base_idx", out)
            writers = extra[: int(rng.integers(2, 5))]
            children = [
                start(lambda f=f, o=out: build_index(f, o, append=True, use_gpu=False).version)
                for f in writers
            ]
            outcomes = [finish(c, 120) for c in children]
            ok = [k for k, o in enumerate(outcomes) if o.status == "ok"]
            have = set(open_index(out).table.column("id").to_pylist())
            want = {f"x{k}_{i}" for k in ok for i in range(3)} | {f"b{i}" for i in range(6)}
            counts["appends"] += len(writers)
            counts["failed"] += len(writers) - len(ok)
            counts["rows_lost"] += len(want - have)
            counts["trials_with_loss"] += bool(want - have)
        return counts
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    print(run(args.trials, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
