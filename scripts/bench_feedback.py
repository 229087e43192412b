"""One round of simulated relevance feedback vs none: precision@10 with bootstrap 95% intervals.

Builds (once, reused: ``dinosearch demo``'s job) a raw and an adapted index of the shared X-rays with
the given backbone (default: the tiny random DINOv2, so every number is UNTRAINED), then queries with
one film per patient drawn from patients the adapter never trained on. Each query's own patient is
excluded from its results (patient-disjoint). Feedback: the first top-10's results are marked
similar when their label equals the query's, not similar otherwise (``--like``/``--unlike``,
Rocchio α=1, β=0.75, γ=0.25), and the search runs again. Reported per index:

- ``none``: precision@10 of the first search;
- ``feedback``: precision@10 of the second search (marked films may come back, as a user sees them);
- ``residual``: precision@10 of the second search without the 10 films already judged (the
  standard residual-collection measure: only new films count).

    python scripts/bench_feedback.py --images ../shared/data/cxr/manifest.parquet --work /tmp/bench_feedback
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from dinosearch.backbones import load_backbone
from dinosearch.demo import DemoConfig, DemoPaths, run_demo, training_subset
from dinosearch.evaluate.bootstrap import bootstrap
from dinosearch.search import VectorSearcher

DEFAULT_IMAGES = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "cxr" / "manifest.parquet"
)


def query_rows(searcher: VectorSearcher, trained: set[str], n: int, seed: int) -> np.ndarray:
    """One film per patient, ``n`` patients the adapter did not train on (seeded)."""
    meta = searcher.metadata
    fresh = meta[~meta["patient_id"].astype(str).isin(trained)]
    one = fresh.groupby("patient_id", sort=True).head(1)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(one.index.to_numpy(), size=min(n, len(one)), replace=False))


def precision(labels: np.ndarray, query_label: str, k: int = 10) -> float:
    return float(np.mean(labels[:k] == query_label)) if len(labels) else float("nan")


def one_index(index: Path, rows: np.ndarray, k: int = 10) -> dict[str, np.ndarray]:
    """Per-query precision@k: none, feedback, residual."""
    searcher = VectorSearcher(index)
    meta = searcher.metadata
    vectors = searcher.vectors_of_rows(rows)
    out: dict[str, list[float]] = {"none": [], "feedback": [], "residual": []}
    for row, q in zip(rows, vectors, strict=True):
        label, own = str(meta["label"].iloc[row]), meta["patient_id"].iloc[row]
        exclude = ("patient_id", own)
        first = searcher.search_vectors(q, k, exclude_group=exclude)[0]
        first_labels = first.rows["label"].astype(str).to_numpy()
        like = first.rows["id"][first_labels == label].tolist()
        unlike = first.rows["id"][first_labels != label].tolist()
        again = searcher.search_vectors(q, 2 * k, exclude_group=exclude, like=like, unlike=unlike)
        second = again[0].rows
        new = second[~second["id"].isin(first.rows["id"])]
        out["none"].append(precision(first_labels, label, k))
        out["feedback"].append(precision(second["label"].astype(str).to_numpy(), label, k))
        out["residual"].append(precision(new["label"].astype(str).to_numpy(), label, k))
    return {name: np.asarray(v) for name, v in out.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", default=str(DEFAULT_IMAGES))
    p.add_argument("--work", default="/tmp/bench_feedback")
    p.add_argument("--backbone", default="dinov2_tiny_test")
    p.add_argument("--image-size", type=int, default=56)
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    start = time.perf_counter()
    backbone = load_backbone(args.backbone, "random", image_size=args.image_size, seed=0)
    config = DemoConfig(images=args.images, name="fb", root=Path(args.work), progress=False)
    run_demo(config, backbone, log=lambda line: print(line, flush=True))
    paths = DemoPaths.of(Path(args.work), "fb")
    raw = VectorSearcher(paths.raw_index)
    trained = training_subset(raw.metadata, config.train_images, "patient_id", 0)
    rows = query_rows(raw, set(trained["patient_id"].astype(str)), args.queries, args.seed)
    per: dict[str, dict[str, np.ndarray]] = {}
    for name, index in (("raw", paths.raw_index), ("adapted", paths.adapted_index)):
        for measure, values in one_index(index, rows).items():
            per[f"{name}-{measure}"] = {"p@10": values}
    groups = raw.metadata["patient_id"].astype(str).to_numpy()[rows]
    pairs = [
        (f"{n}-{m}", f"{n}-none") for n in ("raw", "adapted") for m in ("feedback", "residual")
    ]
    stats = bootstrap(per, groups, pairs, n_boot=1000, seed=args.seed)
    print(
        f"\n{backbone.fingerprint} (random weights: UNTRAINED), {len(rows)} queries "
        f"(one per patient, none the adapter trained on), own patient excluded; "
        f"{time.perf_counter() - start:.0f} s"
    )
    for key, value in stats.items():
        s = value["p@10"]
        print(f"{key:28s} precision@10 {s['mean']:.3f}  [{s['lo']:.3f}, {s['hi']:.3f}]")
    (Path(args.work) / "bench_feedback.json").write_text(json.dumps(stats, indent=2))


if __name__ == "__main__":
    main()
