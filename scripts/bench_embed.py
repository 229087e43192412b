"""Images/s of the whole embed pipeline versus the bare forward pass on the same images and batch size.

    python scripts/bench_embed.py --backbone dinov2_vits14 --n 128 --batch-size 32

The pipeline (read + decode + preprocess in DataLoader workers, overlapped with the forward pass) should
reach ≥ 0.9× the bare forward throughput. On CUDA the forward pass runs under fp16 autocast.
"""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from dinosearch.backbones import load_backbone
from dinosearch.backbones.transforms import eval_transform
from dinosearch.core.runtime import resolve_device
from dinosearch.features.extract import extract_features
from dinosearch.inputs.images import read_image

CXR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cxr" / "images"


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--images", type=Path, default=CXR, help="folder of images (default: shared CXR set)"
    )
    p.add_argument("--backbone", default="dinov2_vits14")
    p.add_argument("--weights", default="random")
    p.add_argument("--n", type=int, default=128, help="number of images")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--repeats", type=int, default=3, help="interleaved repeats; the best of each is kept"
    )
    args = p.parse_args()

    device = resolve_device(args.device)
    paths = [str(x) for x in sorted(args.images.glob("*"))[: args.n]]
    backbone = load_backbone(args.backbone, args.weights, device=device)
    transform = eval_transform(backbone.preprocess)
    amp = torch.autocast("cuda", dtype=torch.float16) if device.type == "cuda" else nullcontext()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    # Bare forward: images decoded and preprocessed beforehand, only the model is timed.
    tensors = torch.stack([transform(read_image(x)) for x in paths])

    def bare_forward() -> float:
        with torch.inference_mode(), amp:
            sync()
            start = time.perf_counter()
            for i in range(0, len(tensors), args.batch_size):
                backbone(tensors[i : i + args.batch_size].to(device)).float().cpu()
            sync()
            return time.perf_counter() - start

    def pipeline() -> float:
        start = time.perf_counter()
        _, feats, failures = extract_features(
            paths, backbone, batch_size=args.batch_size, num_workers=args.workers, progress=False
        )
        sync()
        assert feats.shape == (len(paths) - len(failures), backbone.embed_dim)
        return time.perf_counter() - start

    with torch.inference_mode(), amp:
        backbone(tensors[: args.batch_size].to(device))  # warm-up
    # Interleaved repeats, best of each: other load on the machine hits both sides alike.
    forward_runs, pipeline_runs = [], []
    for _ in range(args.repeats):
        forward_runs.append(bare_forward())
        pipeline_runs.append(pipeline())
    forward_s, pipeline_s = min(forward_runs), min(pipeline_runs)
    n = len(paths)
    print(
        f"device={device} backbone={args.backbone} images={n} batch={args.batch_size} "
        f"threads={torch.get_num_threads()} dtype={'fp16 autocast' if device.type == 'cuda' else 'fp32'}"
    )
    print(
        f"bare forward  : {n / forward_s:7.2f} images/s  (best of {args.repeats}: {forward_s:.1f} s)"
    )
    print(f"embed pipeline: {n / pipeline_s:7.2f} images/s  ({pipeline_s:.1f} s)")
    print(f"ratio pipeline/forward: {forward_s / pipeline_s:.3f}  (target ≥ 0.9)")


if __name__ == "__main__":
    main()
