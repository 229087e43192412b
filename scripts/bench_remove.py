"""Seconds to remove 1% of a 100k-row index (``sync.erase.forget``) versus rebuilding it from features.

    python scripts/bench_remove.py                       # 100,000 x 384, flat and ivf-flat, 1%
    python scripts/bench_remove.py --rows 20000 --types flat,ivf-flat,ivf-pq,hnsw

Synthetic seeded features (clustered, float32) in a temporary folder; per index type: build the
index once, then time ``forget`` (the features folder rewritten, the index's new version published,
the older one deleted) and, from the rewritten features, a fresh ``build_index`` of the same type and
parameters (what a removal cost before ``remove`` existed). ``forget``'s share spent on the features
folder is reported apart: it is the same whatever the index type.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dinosearch.core.storage import sha256_file, write_json
from dinosearch.features.erase import drop_rows
from dinosearch.index import build_index, open_index
from dinosearch.index.erase import erase_from_index

BACKBONE = {"fingerprint": "bench|random|224|cls", "name": "bench", "random_init": True}


def write_features(folder: Path, rows: int, dim: int, seed: int = 0) -> None:
    """A features folder of ``rows`` (N, D) clustered float32 features, as `embed` writes it."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(256, dim)).astype(np.float32)
    feats = centres[rng.integers(0, 256, rows)] + rng.normal(size=(rows, dim)).astype(np.float32)
    folder.mkdir(parents=True)
    np.save(folder / "features.npy", feats)
    ids = [f"img{i:07d}" for i in range(rows)]
    meta = {
        "id": ids,
        "path": [f"/films/{i}.png" for i in ids],
        "patient_id": [i[:-1] for i in ids],
    }
    pd.DataFrame(meta).to_parquet(folder / "metadata.parquet", index=False)
    write_json(
        folder / "manifest.json",
        {
            "kind": "features",
            "backbone": BACKBONE,
            "count": rows,
            "dim": dim,
            "images": f"bench-{rows}",
            "checksums": {n: sha256_file(folder / n) for n in ("features.npy", "metadata.parquet")},
        },
    )


def bench(work: Path, kind: str, rows: int, dim: int, fraction: float) -> dict[str, object]:
    features, index = work / f"features-{kind}", work / f"index-{kind}"
    write_features(features, rows, dim)
    built = time.perf_counter()
    build_index(features, index, index_type=kind)  # type: ignore[arg-type]
    built = time.perf_counter() - built
    params = open_index(index).manifest["params"]
    ids = [
        f"img{i:07d}" for i in np.random.default_rng(1).choice(rows, int(rows * fraction), False)
    ]
    t0 = time.perf_counter()
    drop_rows(features, ids)
    t1 = time.perf_counter()
    erasure = erase_from_index(index, ids)
    t2 = time.perf_counter()
    rebuild = time.perf_counter()
    build_index(features, work / f"rebuilt-{kind}", index_type=kind, params=params)  # type: ignore[arg-type]
    rebuild = time.perf_counter() - rebuild
    return {
        "type": kind,
        "rows": rows,
        "removed": erasure.removed,
        "how": erasure.how,
        "first_build_s": round(built, 2),
        "features_rewrite_s": round(t1 - t0, 2),
        "index_remove_s": round(t2 - t1, 2),
        "remove_total_s": round(t2 - t0, 2),
        "rebuild_index_s": round(rebuild, 2),
        "rebuild_total_s": round(rebuild + (t1 - t0), 2),
        "speedup_index": round(rebuild / max(t2 - t1, 1e-9), 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--fraction", type=float, default=0.01)
    p.add_argument("--types", default="flat,ivf-flat")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.types.split(","):
            print(json.dumps(bench(Path(tmp), kind, args.rows, args.dim, args.fraction)))


if __name__ == "__main__":
    main()
