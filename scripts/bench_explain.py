"""Why-similar maps, measured on real X-rays: faithfulness (masking), completeness and cost.

Embeds ``--count`` films (keeping their final tokens), pairs each of the first ``--pairs`` with its
most similar film of another patient, in the raw and in the adapted space, and explains every pair.
Faithfulness: masking the 25 % of patches a map ranks highest (pixels set to the film's mean grey,
``dinosearch.explain.faithfulness``) should lower the pair's score more than masking a random 25 %.
Cost: one query (batch-1 forward + two exact searches) against one map and the maps of 8 results.
The adapter is untrained (random MLP, standardisation fitted to these films) unless ``--adapter``.

    python scripts/bench_explain.py --images ../shared/data/cxr/manifest.parquet --pairs 200
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from dinosearch.adapt.adapter import AdapterConfig, DomainAdapter, load_adapter
from dinosearch.backbones import Backbone, load_backbone
from dinosearch.explain import Explainer, TokenCache
from dinosearch.explain.faithfulness import masking_trial, summarise
from dinosearch.explain.words import EXPLAINS_LITTLE
from dinosearch.inputs.records import load_records

CXR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cxr" / "manifest.parquet"
SAMPLE = Path(__file__).resolve().parents[1] / "dinosearch" / "sample" / "manifest.csv"


def films(args: argparse.Namespace) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """Paths of ``--count`` seeded-random films, their patient groups and labels (if any)."""
    source = args.images or (SAMPLE if args.sample or not CXR.is_file() else CXR)
    records, _ = load_records(source)
    records = records.sample(n=min(args.count, len(records)), random_state=args.seed)
    group = "patient_id" if "patient_id" in records.columns else "path"
    print(f"films: {len(records)} from {source} (groups: {group})")
    labels = records["label"].astype(str).to_numpy() if "label" in records.columns else None
    return records["path"].astype(str).tolist(), records[group].astype(str).to_numpy(), labels


def precision_at(vectors: np.ndarray, groups: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    """Mean share of each film's k nearest films of other patients that carry its label."""
    scores = vectors @ vectors.T  # (N, N)
    scores[groups[:, None] == groups[None, :]] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # (N, k)
    return float((labels[top] == labels[:, None]).mean())


def embed(explainer: Explainer, paths: list[str], batch: int = 16) -> np.ndarray:
    """(N, D) pooled backbone features; every film's tokens stay in the explainer's cache."""
    out = []
    for start in range(0, len(paths), batch):
        tokens = explainer.tokens(explainer.inputs(paths[start : start + batch]))
        out.append(explainer.backbone.pool(tokens).numpy())
    return np.concatenate(out)


def adapter_for(
    args: argparse.Namespace, backbone: Backbone, features: np.ndarray
) -> DomainAdapter:
    if args.adapter:
        return load_adapter(args.adapter, backbone_fingerprint=backbone.fingerprint)
    torch.manual_seed(args.seed)
    adapter = DomainAdapter(AdapterConfig(in_dim=backbone.embed_dim)).eval()
    adapter.set_standardization(features)
    return adapter


def nearest(vectors: np.ndarray, groups: np.ndarray, queries: int) -> np.ndarray:
    """For each of the first ``queries`` rows, the most similar row of another group."""
    scores = vectors[:queries] @ vectors.T  # (Q, N)
    scores[groups[:queries, None] == groups[None, :]] = -np.inf
    return scores.argmax(1)


def faithfulness(
    explainer: Explainer, paths: list[str], results: np.ndarray, args: argparse.Namespace
) -> tuple[dict[str, float], list[float], list[float]]:
    """Masking trials, |gaps|, completeness and seconds per map over the pairs (query i, results[i])."""
    rng = np.random.default_rng(args.seed)
    trials, gaps, seconds, complete, peaks = [], [], [], [], []
    for i, j in enumerate(results):
        images = explainer.inputs([paths[i], paths[int(j)]])
        start = time.perf_counter()
        patch_map = explainer.explain_inputs(images, method=args.method, steps=args.steps)
        seconds.append(time.perf_counter() - start)
        gaps += [abs(patch_map.gap("query")), abs(patch_map.gap("result"))]
        complete.append(patch_map.completeness())  # the smaller film's, as the map states it
        even = abs(patch_map.score) / patch_map.query.size  # the colour scale's full strength
        peaks.append(max(np.abs(patch_map.query).max(), np.abs(patch_map.result).max()) / even)
        if not args.no_masking:
            trials.append(masking_trial(explainer, images, patch_map, share=0.25, rng=rng))
    summary = summarise(trials) if trials else {"pairs": len(results)}
    summary["method"] = f"{patch_map.method}/{patch_map.steps}"  # type: ignore[assignment]
    summary["completeness_median"] = float(np.median(complete))
    summary["completeness_p10"] = float(np.percentile(complete, 10))
    summary["explains_little"] = float(np.mean(np.array(complete) < EXPLAINS_LITTLE))
    summary["peak_effect"] = float(np.median(peaks))
    return summary, gaps, seconds


def report(side: str, summary: dict, gaps: list[float], seconds: list[float]) -> None:
    masking = (
        f"top-25% mask lowers the score more than a random 25% in {summary['top_beats_random']:.1%} "
        f"of pairs (query film only {summary['query_only']:.1%}, result film only "
        f"{summary['result_only']:.1%}); mean drop {summary['mean_drop_top']:+.4f} vs "
        f"{summary['mean_drop_random']:+.4f}; "
        if "top_beats_random" in summary
        else ""
    )
    print(
        f"{side:8s} {summary['method']:16s} pairs {summary['pairs']}: completeness median "
        f"{summary['completeness_median']:.1%}, 10th percentile {summary['completeness_p10']:.1%} "
        f"({summary['explains_little']:.0%} of maps say 'explains little'); {masking}"
        f"gap |score − rest − Σ| median {statistics.median(gaps):.1e}, max {max(gaps):.1e}; "
        f"median peak |effect| {summary['peak_effect']:.2f}× an even share; "
        f"{statistics.median(seconds) * 1000:.0f} ms per map (tokens cached)"
    )


def cost(
    explainers: list[Explainer], paths: list[str], vectors: list[np.ndarray], repeats: int
) -> None:
    """One query (batch-1 forward + both searches) vs one map and the maps of the top 8 results.

    Maps start cold (the app's query forward does not keep tokens): the first map runs the query
    and the result, later ones only their result. Interleaved, so background load hits all alike.
    """
    query = explainers[0].inputs([paths[0]])

    def one_query() -> None:
        with torch.no_grad():
            features = explainers[0].backbone(query)
            for e, v in zip(explainers, vectors, strict=True):
                np.argsort(-(v @ e.project(features)[0].numpy()))[:8]

    def maps(side: Explainer, count: int) -> None:
        side.cache = TokenCache(64)
        for j in range(1, count + 1):
            side.explain(paths[0], paths[j], matches=False)  # as the app, lines off

    runs = {"query": one_query}
    for side, name in zip(explainers, ("raw", "adapted"), strict=True):
        runs[f"{name} 1"] = lambda s=side: maps(s, 1)
        runs[f"{name} 8"] = lambda s=side: maps(s, 8)
    for fn in runs.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            times[name].append(_timed(fn))
    t = {name: statistics.median(v) for name, v in times.items()}
    for name in ("raw", "adapted"):
        one, eight = t[f"{name} 1"], t[f"{name} 8"]
        print(
            f"cost {name:8s}: one query {t['query'] * 1000:.0f} ms; one map {one * 1000:.0f} ms "
            f"({one / t['query']:.1f}× a query); maps of 8 results {eight * 1000:.0f} ms "
            f"({eight / t['query']:.1f}× a query; {repeats} interleaved repeats, median)"
        )


def _timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--images", default=None, help="manifest or folder (default: shared CXR, else sample)"
    )
    p.add_argument(
        "--count", type=int, default=400, help="films embedded (pairs are found among them)"
    )
    p.add_argument(
        "--pairs", type=int, default=200, help="query films, one pair each (0: cost only)"
    )
    p.add_argument("--backbone", default="dinov2_vits14")
    p.add_argument("--weights", default="random")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--pooling", default="mean", choices=["cls", "cls+mean", "mean"])
    p.add_argument("--method", default="auto", help="auto, decomposition, token-ig, input-ig")
    p.add_argument("--adapter", default=None, help="a trained adapter folder (default: untrained)")
    p.add_argument("--repeats", type=int, default=3, help="timing repeats (median; 0: no cost)")
    p.add_argument("--steps", type=int, default=None, help="integration steps (default by method)")
    p.add_argument("--no-masking", action="store_true", help="skip the masking trials")
    p.add_argument("--sample", action="store_true", help="the bundled sample, not the shared CXR")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    start = time.perf_counter()
    backbone = load_backbone(
        args.backbone, args.weights, image_size=args.image_size, pooling=args.pooling
    )
    print(f"{backbone.fingerprint}, grid {backbone.grid}, torch threads {torch.get_num_threads()}")
    paths, groups, labels = films(args)
    cache = TokenCache(len(paths) + 2)
    raw = Explainer(backbone, None, cache=cache)
    features = embed(raw, paths)
    adapted = Explainer(backbone, adapter_for(args, backbone, features), cache=cache)
    with torch.no_grad():
        vectors = [e.project(torch.from_numpy(features)).numpy() for e in (raw, adapted)]
    for explainer, v, side in zip((raw, adapted), vectors, ("raw", "adapted"), strict=True):
        if labels is not None:
            print(f"{side:8s} precision@10 (other patients): {precision_at(v, groups, labels):.3f}")
        if args.pairs > 0:  # --pairs 0: cost only
            results = nearest(v, groups, min(args.pairs, len(paths)))
            report(side, *faithfulness(explainer, paths, results, args))
    if args.repeats > 0:
        cost([raw, adapted], paths, vectors, args.repeats)
    print(f"bench finished in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
