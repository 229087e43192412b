"""Images/s of the whole embed pipeline versus the bare forward pass on the same images and batch size.

    python scripts/bench_embed.py --backbone dinov2_vits14 --n 128 --batch-size 32
    python scripts/bench_embed.py --full-size --n 8      # 2,048 x 2,500 px PNG / DICOM copies
    python scripts/bench_embed.py --loader-only --n 4096 --batch-size 256 --workers 2

The pipeline (read + decode + resize in DataLoader workers, normalise on the device, overlapped with
the forward pass) should reach ≥ 0.9x the bare forward, which runs on inputs already normalised on
the device and keeps its outputs there. On CUDA the forward runs under fp16 autocast, or in fp16
with ``--half``; ``--compile`` compiles the backbone first (a minute, outside the timings).
``--n`` larger than the folder repeats its images.

``--full-size`` makes 2,048 x 2,500 px, 12-bit copies of the first ``--n`` images as 16-bit PNG and
DICOM (uncompressed, JPEG 2000 lossless, JPEG-LS lossless; plus an 8-bit JPEG) in a temporary
folder, and reports per format the read + decode + preprocess rate on one CPU core, then the whole
pipeline (features/s) with the default workers.

``--loader-only`` times everything but the forward pass (workers read, decode, resize and crop to
uint8; batches are collated, pinned on CUDA, copied to the device and normalised there): the rate a
faster model would wait for, and per worker process, the number to multiply by the cores of a GPU
machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dinosearch.backbones import Backbone, load_backbone
from dinosearch.backbones.transforms import Normalizer, uint8_transform
from dinosearch.core.runtime import resolve_device
from dinosearch.features.extract import default_batch_size, extract_features, input_batches
from dinosearch.features.loader import collate, default_workers, read_reduced
from dinosearch.inputs.images import read_image

CXR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cxr" / "images"
SAMPLE = Path(__file__).resolve().parents[1] / "dinosearch" / "sample" / "images"
FULL_SIZE = (2048, 2500)  # width, height


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--images",
        type=Path,
        default=CXR if CXR.is_dir() else SAMPLE,
        help="folder of images (default: the shared CXR set, else the bundled sample)",
    )
    p.add_argument("--backbone", default="dinov2_vits14")
    p.add_argument("--weights", default="random")
    p.add_argument("--n", type=int, default=128, help="number of images")
    p.add_argument("--batch-size", type=int, default=None, help="default: by device")
    p.add_argument("--workers", type=int, default=None, help="default: by device")
    p.add_argument("--device", default="auto")
    p.add_argument("--half", action="store_true", help="fp16 weights (CUDA)")
    p.add_argument("--compile", action="store_true", help="torch.compile the backbone (CUDA)")
    p.add_argument(
        "--repeats", type=int, default=3, help="interleaved repeats; the best of each is kept"
    )
    p.add_argument("--full-size", action="store_true", help="2,048 x 2,500 px PNG/DICOM rates")
    p.add_argument("--loader-only", action="store_true", help="everything but the forward pass")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    device = resolve_device(args.device)
    backbone = load_backbone(
        args.backbone, args.weights, device=device, half=args.half, compile=args.compile
    )
    batch = args.batch_size or default_batch_size(device, backbone.preprocess.image_size)
    files = sorted(p for p in args.images.glob("*") if p.is_file())
    if not files:
        raise SystemExit(f"no images in {args.images}; pass --images FOLDER")
    if args.full_size:
        full_size(args, backbone, batch, files[: args.n])
        return
    paths = [str(files[i % len(files)]) for i in range(args.n)]
    if args.loader_only:
        loader_only(args, backbone, batch, paths)
        return
    forward, pipeline = compare(args, backbone, batch, paths)
    n = len(paths)
    print(
        f"device={device} backbone={args.backbone} images={n} batch={batch} "
        f"workers={args.workers if args.workers is not None else default_workers(device)} "
        f"threads={torch.get_num_threads()} dtype={precision(backbone)}"
    )
    print(f"bare forward  : {forward:7.2f} images/s  (best of {args.repeats}: {n / forward:.1f} s)")
    print(f"embed pipeline: {pipeline:7.2f} images/s  ({n / pipeline:.1f} s)")
    print(f"ratio pipeline/forward: {pipeline / forward:.3f}  (target ≥ 0.9)")


def precision(backbone: Backbone) -> str:
    device = next(backbone.parameters()).device
    kind = "fp16 weights" if backbone.input_dtype == torch.float16 else "fp32"
    kind = "fp16 autocast" if device.type == "cuda" and kind == "fp32" else kind
    return kind + (" compiled" if "compiled" in backbone.speedups else "")


def autocast(backbone: Backbone) -> AbstractContextManager[object]:
    cuda = next(backbone.parameters()).device.type == "cuda"
    if cuda and backbone.input_dtype == torch.float32:
        return torch.autocast("cuda", dtype=torch.float16)
    return nullcontext()


def compare(
    args: argparse.Namespace, backbone: Backbone, batch: int, paths: list[str]
) -> tuple[float, float]:
    """Best-of-repeats images/s of (bare forward, pipeline) over ``paths``, interleaved."""
    device = next(backbone.parameters()).device
    sync: Callable[[], None] = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    # Bare forward: up to 4 batches decoded and normalised on the device beforehand, cycled.
    pre = backbone.preprocess
    to_uint8 = uint8_transform(pre)
    unique = paths[: 4 * batch]
    items = [(i, to_uint8(read_image(p)), None) for i, p in enumerate(unique)]
    images = collate(items).images
    assert images is not None
    inputs = Normalizer(pre, backbone.input_dtype)(images.to(device))  # (k, 3, S, S)

    steps = -(-len(paths) // batch)  # full batches only: one input shape, one compilation

    def bare_forward() -> float:
        with torch.inference_mode(), autocast(backbone):
            sync()
            start = time.perf_counter()
            for i in range(steps):
                backbone(
                    inputs[torch.arange(i * batch, (i + 1) * batch, device=device) % len(inputs)]
                )
            sync()
            return steps * batch / (time.perf_counter() - start)

    def pipeline() -> float:
        start = time.perf_counter()
        kept, _, failures = extract_features(
            paths, backbone, batch_size=batch, num_workers=args.workers, progress=False
        )
        assert len(kept) + len(failures) == len(paths)
        return len(paths) / (time.perf_counter() - start)

    with torch.inference_mode(), autocast(backbone):
        backbone(inputs[torch.arange(batch, device=device) % len(inputs)])  # warm-up, compiles
    forward_runs, pipeline_runs = [], []
    for _ in range(args.repeats):
        forward_runs.append(bare_forward())
        pipeline_runs.append(pipeline())
    return max(forward_runs), max(pipeline_runs)


def loader_only(args: argparse.Namespace, backbone: Backbone, batch: int, paths: list[str]) -> None:
    """Best-of-repeats images/s of the loader alone, up to normalised inputs on the device."""
    device = next(backbone.parameters()).device
    pre = backbone.preprocess
    workers = args.workers if args.workers is not None else default_workers(device)
    sync: Callable[[], None] = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    best = 0.0
    for _ in range(args.repeats):
        start, n = time.perf_counter(), 0
        for b, _ in input_batches(paths, backbone, batch, num_workers=workers):
            assert not b.failures, b.failures[:3]
            n += len(b.indices)
        sync()
        best = max(best, n / (time.perf_counter() - start))
    print(
        f"device={device} images={len(paths)} batch={batch} workers={workers} "
        f"input={pre.resize_size}->{pre.image_size} px"
    )
    print(
        f"loader alone: {best:8.1f} images/s, {best / max(workers, 1):.1f} per worker process "
        f"(best of {args.repeats}; startup of the workers included)"
    )


def full_size(args: argparse.Namespace, backbone: Backbone, batch: int, files: list[Path]) -> None:
    """Per format: read + decode + preprocess images/s on one core, then features/s end to end."""
    pre = backbone.preprocess
    read, to_uint8 = read_reduced(pre.resize_size), uint8_transform(pre)
    with tempfile.TemporaryDirectory(prefix="bench-full-size-") as tmp:
        made = make_full_size(files, Path(tmp))
        threads = torch.get_num_threads()
        print(
            f"{len(files)} films at {FULL_SIZE[0]} x {FULL_SIZE[1]} px, 12 bits; {args.backbone} "
            f"({precision(backbone)}), batch {batch}, device {next(backbone.parameters()).device}"
        )
        print(f"{'format':<24} {'MB/file':>8} {'decode+prep/core':>17} {'end to end':>14}")
        for name, paths in made.items():
            torch.set_num_threads(1)  # as in a DataLoader worker
            start = time.perf_counter()
            for path in paths:
                to_uint8(read(path))
            per_core = len(paths) / (time.perf_counter() - start)
            torch.set_num_threads(threads)
            start = time.perf_counter()
            kept, _, failures = extract_features(
                paths, backbone, batch_size=batch, num_workers=args.workers, progress=False
            )
            assert not failures, failures
            end_to_end = len(kept) / (time.perf_counter() - start)
            mb = np.mean([Path(p).stat().st_size for p in paths]) / 1e6
            print(f"{name:<24} {mb:8.2f} {per_core:11.2f} img/s {end_to_end:8.2f} feat/s")


def make_full_size(files: list[Path], folder: Path) -> dict[str, list[str]]:
    """12-bit 2,048 x 2,500 px copies of ``files`` per format → {format: paths}."""
    from pydicom.uid import JPEG2000Lossless, JPEGLSLossless

    Writer = Callable[[Path, np.ndarray, Image.Image], None]  # (path, 12-bit (H, W), 8-bit image)
    writers: dict[str, tuple[str, Writer]] = {
        "PNG 16-bit": (".png", lambda p, a, _: Image.fromarray(a).save(p)),
        "DICOM uncompressed": (".dcm", lambda p, a, _: write_dicom(p, a, None)),
        "DICOM JPEG 2000 lossless": (".dcm", lambda p, a, _: write_dicom(p, a, JPEG2000Lossless)),
        "DICOM JPEG-LS lossless": (".dcm", lambda p, a, _: write_dicom(p, a, JPEGLSLossless)),
        "JPEG 8-bit (draft)": (".jpg", lambda p, _, big: big.save(p, quality=90)),
    }
    made: dict[str, list[str]] = {name: [] for name in writers}
    rng = np.random.default_rng(0)
    for i, file in enumerate(files):
        big = read_image(file).convert("L").resize(FULL_SIZE, Image.Resampling.BICUBIC)
        noise = rng.integers(0, 16, (FULL_SIZE[1], FULL_SIZE[0]))  # detector noise, low 4 bits
        pixels = (np.asarray(big, dtype=np.uint16) * 16 + noise).astype(np.uint16)  # (H, W)
        for name, (suffix, write) in writers.items():
            path = folder / f"{name.split(' (')[0].replace(' ', '_')}-{i}{suffix}"
            write(path, pixels, big)
            made[name].append(str(path))
    return made


def write_dicom(path: Path, pixels: np.ndarray, syntax: str | None) -> None:
    """A DX DICOM of 12-bit ``pixels`` (H, W) uint16, compressed with ``syntax`` (None: as is)."""
    from pydicom.dataset import Dataset
    from pydicom.uid import DigitalXRayImageStorageForPresentation, generate_uid

    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = DigitalXRayImageStorageForPresentation, generate_uid()
    ds.Modality = "DX"
    ds.set_pixel_data(pixels, photometric_interpretation="MONOCHROME2", bits_stored=12)
    if syntax is not None:
        ds.compress(syntax)
    ds.save_as(path, enforce_file_format=True)  # fills in the file meta information


if __name__ == "__main__":
    main()
