"""Images → backbone features (N×D float32), batched under inference mode, bad files reported and skipped."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from dinosearch.backbones import Backbone
from dinosearch.backbones.transforms import ImageTransform, eval_transform
from dinosearch.inputs.images import ImageReadError, read_image

Item = tuple[int, torch.Tensor | None, str | None]


class ImageDataset(Dataset[Item]):
    """Reads and transforms one image per item; a failure becomes (index, None, reason), never an exception.

    With ``seed`` set, each item's transform draws from its own generator state (seed, index), so random
    augmentations repeat exactly whatever the number of workers.
    """

    def __init__(
        self, paths: Sequence[str], transform: ImageTransform, seed: int | None = None
    ) -> None:
        self.paths = list(paths)
        self.transform = transform
        self.seed = seed

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Item:
        try:
            image = read_image(self.paths[index])
            if self.seed is not None:
                torch.manual_seed(self.seed * 1_000_003 + index)
            return index, self.transform(image), None
        except ImageReadError as e:
            return index, None, e.reason
        except Exception as e:  # a transform failing on a strange image must not kill the batch
            return index, None, f"{type(e).__name__}: {e}"


@dataclass
class Batch:
    indices: torch.Tensor  # (b,) positions in the input list of images that decoded
    images: torch.Tensor | None  # (b, 3, S, S), None when every image failed
    failures: list[tuple[int, str]]  # (position, reason)


def collate(items: list[Item]) -> Batch:
    good = [(i, x) for i, x, _ in items if x is not None]
    failures = [(i, reason or "unknown error") for i, x, reason in items if x is None]
    if not good:
        return Batch(torch.empty(0, dtype=torch.long), None, failures)
    return Batch(torch.tensor([i for i, _ in good]), torch.stack([x for _, x in good]), failures)


def default_workers(device: torch.device) -> int:
    """Decoding overlaps the forward pass: several workers on GPU, one spare core on CPU."""
    cores = os.cpu_count() or 1
    return min(8, cores) if device.type == "cuda" else max(1, cores // 2)


def worker_init(_: int) -> None:
    torch.set_num_threads(1)  # workers decode; the main process owns the cores for the model


def iter_features(
    paths: Sequence[str],
    backbone: Backbone,
    *,
    transform: ImageTransform | None = None,
    batch_size: int = 32,
    num_workers: int | None = None,
    seed: int | None = None,
    progress: bool | str = True,
) -> Iterator[tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]]:
    """Yield (positions (b,), features (b, D) float32, failures [(position, reason)]) batch by batch.

    Runs under ``torch.inference_mode``; fp16 autocast and pinned memory on CUDA, fp32 on CPU.
    """
    device = next(backbone.parameters()).device
    transform = transform or eval_transform(backbone.preprocess)
    workers = default_workers(device) if num_workers is None else num_workers
    loader = DataLoader(
        ImageDataset(paths, transform, seed),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
        worker_init_fn=worker_init if workers else None,
        prefetch_factor=4 if workers else None,
    )
    autocast: Callable[[], object] = (
        (lambda: torch.autocast("cuda", dtype=torch.float16))
        if device.type == "cuda"
        else nullcontext
    )
    desc = progress if isinstance(progress, str) else "embed"
    with tqdm(total=len(paths), desc=desc, unit="img", disable=not progress) as bar:
        for batch in loader:
            feats = np.empty((0, backbone.embed_dim), dtype=np.float32)
            if batch.images is not None:
                with torch.inference_mode(), autocast():  # type: ignore[attr-defined]
                    out = backbone(batch.images.to(device, non_blocking=True))
                feats = out.float().cpu().numpy()
            bar.update(len(batch.indices) + len(batch.failures))
            yield batch.indices.numpy(), feats, batch.failures


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
