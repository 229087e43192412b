"""Warm app query latency (upload bytes → both result lists) vs one backbone forward + two searches.

Builds (once, reused) a raw and an adapted index of ``--count`` real X-rays in ``--work``, then times,
interleaved and after warm-up, the app's query path (``read_query`` + ``SideBySide.query``) and the
floor it cannot beat: one batch-1 forward of an already preprocessed tensor plus two FAISS searches.

    python scripts/bench_query.py --images ../shared/data/cxr/manifest.parquet --count 200
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from dinosearch.app.compare import SideBySide, read_query
from dinosearch.backbones import Backbone, load_backbone
from dinosearch.features.folder import embed_to_folder
from dinosearch.index import build_index
from dinosearch.inputs.records import load_records

DEFAULT_IMAGES = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "cxr" / "manifest.parquet"
)


def build(args: argparse.Namespace, backbone: Backbone) -> tuple[Path, Path, str]:
    """Raw and adapted (untrained adapter: same cost as a trained one) indexes; a query file."""
    from dinosearch.adapt.adapter import AdapterConfig, DomainAdapter, save_adapter

    work = Path(args.work)
    records, _ = load_records(args.images)
    records = records.sample(n=min(args.count + 1, len(records)), random_state=0)
    query, gallery = records.iloc[0], records.iloc[1:].reset_index(drop=True)
    raw, adapted = work / "indexes" / "raw", work / "indexes" / "adapted"
    if not (adapted / "current").is_file():
        features = work / "features"
        embed_to_folder(gallery, backbone, features, batch_size=16, progress=True)
        torch.manual_seed(0)
        save_adapter(
            DomainAdapter(AdapterConfig(in_dim=backbone.embed_dim)),
            work / "adapter",
            backbone_fingerprint=backbone.fingerprint,
            train_config={},
            data={},
            metrics={},
        )
        build_index(features, raw)
        build_index(features, adapted, adapter_dir=work / "adapter")
    return raw, adapted, str(query["path"])


def timed(fn: Callable[[], object], timings: list[float]) -> None:
    start = time.perf_counter()
    fn()
    timings.append((time.perf_counter() - start) * 1000)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", default=str(DEFAULT_IMAGES), help="image folder or manifest")
    p.add_argument("--count", type=int, default=200, help="images to index")
    p.add_argument("--work", default="/tmp/bench_query", help="scratch folder (reused)")
    p.add_argument("--backbone", default="dinov2_vits14")
    p.add_argument("--weights", default="random")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--repeats", type=int, default=30)
    args = p.parse_args()

    backbone = load_backbone(args.backbone, args.weights, image_size=args.image_size)
    raw_dir, adapted_dir, query_file = build(args, backbone)
    pair = SideBySide(raw_dir, adapted_dir)
    data, name = Path(query_file).read_bytes(), Path(query_file).name

    def app_query() -> object:
        return pair.query(read_query(data, name), args.k)

    tensor = pair.raw.transform(read_query(data, name))[None]  # (1, 3, S, S), preprocessed once
    vectors = [s.embed_features(pair.raw.image_features([read_query(data, name)])) for s in
               (pair.raw, pair.adapted)]  # fmt: skip

    def floor() -> object:
        with torch.inference_mode():
            pair.raw.backbone(tensor)
        return [
            s.handle.index.search(v, args.k)
            for s, v in zip((pair.raw, pair.adapted), vectors, strict=True)
        ]

    for _ in range(3):  # warm-up: allocator, thread pools, metadata conversion
        app_query(), floor()
    app_ms: list[float] = []
    floor_ms: list[float] = []
    for _ in range(args.repeats):  # interleaved, so background load hits both alike
        timed(app_query, app_ms)
        timed(floor, floor_ms)
    a, f = statistics.median(app_ms), statistics.median(floor_ms)
    print(
        f"{backbone.fingerprint}, {pair.raw.handle.count} indexed images, k={args.k}, "
        f"torch threads {torch.get_num_threads()}, {args.repeats} interleaved repeats (median)"
    )
    print(f"app warm query (upload bytes → both result lists): {a:7.1f} ms")
    print(f"one forward at batch 1 + two searches:             {f:7.1f} ms")
    print(f"ratio: {a / f:.2f}x (target ≤ 1.3x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
