"""Images → backbone features (N×D float32), batched under inference mode, bad files reported and skipped."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext

import numpy as np
import torch
from tqdm.auto import tqdm

from dinosearch.backbones import Backbone
from dinosearch.backbones.transforms import ImageTransform, Normalizer, uint8_transform
from dinosearch.features.loader import (
    Batch,
    ImageDataset,
    default_workers,
    make_loader,
    read_reduced,
    to_device,
)

Features = tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]


def default_batch_size(device: torch.device, image_size: int = 224) -> int:
    """32 on CPU (as ever); on CUDA 512 images of 224 px on a ≥ 40 GiB GPU, fewer on smaller GPUs
    or for larger inputs (tokens grow with the square of the side)."""
    if device.type != "cuda":
        return 32
    gib = torch.cuda.get_device_properties(device).total_memory / 2**30
    base = 512 if gib >= 40 else 256 if gib >= 16 else 64
    return max(8, 2 ** int(math.log2(base * (224 / image_size) ** 2)))


def iter_features(
    paths: Sequence[str],
    backbone: Backbone,
    *,
    transform: ImageTransform | None = None,
    batch_size: int | None = None,
    num_workers: int | None = None,
    seed: int | None = None,
    progress: bool | str = True,
    warnings: list[tuple[int, str]] | None = None,
) -> Iterator[Features]:
    """Yield (positions (b,), features (b, D) float32, failures [(position, reason)]) batch by batch.

    Images read with a warning (a DICOM window dropped for the modality range) are embedded, and
    (position, warning) is appended to ``warnings`` when given.

    Without ``transform``, workers hand over resized uint8 crops and the device normalises them
    (``loader.py``); a ``transform`` (augmented views) gives float tensors instead. ``batch_size``
    and ``num_workers`` default by device (``default_batch_size``, ``default_workers``). Runs under
    ``torch.inference_mode``; on CUDA with fp16 autocast (or fp16 weights), fp32 on CPU.
    """
    device = next(backbone.parameters()).device
    size = batch_size or default_batch_size(device, backbone.preprocess.image_size)
    batches = input_batches(
        paths, backbone, size, transform=transform, num_workers=num_workers, seed=seed
    )
    pad_to = size if "compiled" in backbone.speedups else 0  # one shape, one compilation
    desc = progress if isinstance(progress, str) else "embed"
    with tqdm(total=len(paths), desc=desc, unit="img", disable=not progress) as bar:
        for batch, feats in _forward(batches, backbone, pad_to):
            bar.update(len(batch.indices) + len(batch.failures))
            if warnings is not None:
                warnings.extend(batch.warnings)
            yield batch.indices.numpy(), feats, batch.failures


def input_batches(
    paths: Sequence[str],
    backbone: Backbone,
    batch_size: int,
    *,
    transform: ImageTransform | None = None,
    num_workers: int | None = None,
    seed: int | None = None,
) -> Iterator[tuple[Batch, torch.Tensor | None]]:
    """The backbone's inputs batch by batch: (batch, (b, 3, S, S) normalised on its device, or None
    when every image of the batch failed). Decoded by ``num_workers`` processes (default by device);
    without ``transform``, as uint8 crops normalised on the device (``loader.py``)."""
    device = next(backbone.parameters()).device
    pre = backbone.preprocess
    dataset = (
        ImageDataset(paths, uint8_transform(pre), read=read_reduced(pre.resize_size))
        if transform is None
        else ImageDataset(paths, transform, seed)
    )
    workers = default_workers(device) if num_workers is None else num_workers
    loader = make_loader(dataset, batch_size=batch_size, num_workers=workers, device=device)
    return to_device(loader, device, Normalizer(pre, backbone.input_dtype))


def _forward(
    batches: Iterable[tuple[Batch, torch.Tensor | None]], backbone: Backbone, pad_to: int
) -> Iterator[tuple[Batch, np.ndarray]]:
    """(batch, features (b, D) float32) per batch. On CUDA the features of batch i are copied to
    the host asynchronously and awaited only once batch i+1's forward is queued."""
    device = next(backbone.parameters()).device
    cuda = device.type == "cuda"
    autocast: Callable[[], AbstractContextManager[object]] = (
        (lambda: torch.autocast("cuda", dtype=torch.float16))
        if cuda and backbone.input_dtype == torch.float32
        else nullcontext
    )
    pending: deque[tuple[Batch, torch.Tensor, torch.cuda.Event | None]] = deque()
    for batch, images in batches:
        feats, event = torch.empty((0, backbone.embed_dim)), None
        if images is not None:
            with torch.inference_mode(), autocast():
                out = backbone(_pad(images, pad_to))[: len(images)]  # (b, D)
            feats = out.float().to("cpu", non_blocking=cuda)  # pinned host memory on CUDA
            if cuda:
                event = torch.cuda.Event()
                event.record(torch.cuda.current_stream(device))
        pending.append((batch, feats, event))
        while len(pending) > cuda:  # on CUDA one batch stays in flight
            yield _landed(*pending.popleft())
    while pending:
        yield _landed(*pending.popleft())


def _landed(
    batch: Batch, host: torch.Tensor, copied: torch.cuda.Event | None
) -> tuple[Batch, np.ndarray]:
    if copied is not None:
        copied.synchronize()  # the asynchronous copy to the host has finished
    return batch, host.numpy()


def _pad(images: torch.Tensor, size: int) -> torch.Tensor:
    """(b, 3, S, S) → (size, 3, S, S) with zero rows, when b < size."""
    if len(images) >= size:
        return images
    return torch.cat([images, images.new_zeros((size - len(images), *images.shape[1:]))])


def extract_features(
    paths: Sequence[str], backbone: Backbone, **kwargs: object
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]:
    """All features at once: (positions kept (n,), features (n, D) float32, failures), in input order."""
    positions, chunks, failures = [], [], []
    for pos, feats, fails in iter_features(paths, backbone, **kwargs):  # type: ignore[arg-type]
        positions.append(pos)
        chunks.append(feats)
        failures.extend(fails)
    dim = backbone.embed_dim
    all_pos = np.concatenate(positions) if positions else np.empty(0, dtype=np.int64)
    all_feats = np.concatenate(chunks) if chunks else np.empty((0, dim), dtype=np.float32)
    order = np.argsort(all_pos, kind="stable")
    return all_pos[order], all_feats[order], sorted(failures)
