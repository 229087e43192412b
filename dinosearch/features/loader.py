"""The image loader: paths → pinned uint8 batches → normalised model inputs on the device.

timm's ``fast_collate`` + ``PrefetchLoader`` pattern. Workers read, resize and centre-crop to uint8
(one channel for grayscale films, a quarter of float32's bytes and a third of RGB's); batches are
stacked as uint8 and pinned; normalisation, channel replication and the dtype cast run on the device,
where on CUDA the copy of batch i+1 runs on a side stream while the model works on batch i.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset

from dinosearch.backbones.transforms import ImageTransform
from dinosearch.inputs.errors import ArchiveError
from dinosearch.inputs.images import MAX_PIXELS, ImageReadError, read_image
from dinosearch.inputs.limits import open_regular_file, size_problem

Item = tuple[
    int, torch.Tensor | None, str | None
]  # (index, image or None, why it failed / warning)
Reader = Callable[[str], Image.Image]


class ImageDataset(Dataset[Item]):
    """Reads and transforms one image per item; a failure becomes (index, None, reason), never an exception.

    An image read with a warning (a DICOM window dropped for the modality range) is (index, image,
    warning).

    With ``seed`` set, each item's transform draws from its own generator state (seed, index), so random
    augmentations repeat exactly whatever the number of workers.
    """

    def __init__(
        self,
        paths: Sequence[str],
        transform: ImageTransform,
        seed: int | None = None,
        read: Reader = read_image,
    ) -> None:
        self.paths = list(paths)
        self.transform = transform
        self.seed = seed
        self.read = read

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Item:
        try:
            image = self.read(self.paths[index])
            warning = image.info.get("warning")
            if self.seed is not None:
                torch.manual_seed(self.seed * 1_000_003 + index)
            return index, self.transform(image), warning if isinstance(warning, str) else None
        except ImageReadError as e:
            return index, None, e.reason
        except ArchiveError:
            raise  # the archive is down or refuses us: the run stops, a later one resumes
        except Exception as e:  # a transform failing on a strange image must not kill the batch
            return index, None, f"{type(e).__name__}: {e}"


@dataclass
class Batch:
    indices: torch.Tensor  # (b,) positions in the input list of images that decoded
    # (b, C, S, S) uint8 with C = 1 or 3, or float (augmented views); None when every image failed
    images: torch.Tensor | None
    failures: list[tuple[int, str]]  # (position, reason)
    warnings: list[tuple[int, str]] = field(default_factory=list)  # (position, warning), read

    def pin_memory(self) -> Batch:
        """Called by the DataLoader's pinning thread, so the host → device copy can be asynchronous."""
        images = None if self.images is None else self.images.pin_memory()
        return Batch(self.indices, images, self.failures, self.warnings)


def collate(items: Sequence[Item]) -> Batch:
    """Stack as they are (uint8 stays uint8); grayscale items join a colour batch as 3 equal channels."""
    good = [(i, x) for i, x, _ in items if x is not None]
    failures = [(i, reason or "unknown error") for i, x, reason in items if x is None]
    warnings = [(i, note) for i, x, note in items if x is not None and note]
    if not good:
        return Batch(torch.empty(0, dtype=torch.long), None, failures)
    channels = max(x.shape[-3] for _, x in good)
    images = torch.stack([x.expand(*x.shape[:-3], channels, *x.shape[-2:]) for _, x in good])
    return Batch(torch.tensor([i for i, _ in good]), images, failures, warnings)


def read_reduced(min_side: int) -> Reader:
    """``read_image``, except that a large JPEG is decoded at 1/2, 1/4 or 1/8 size (Pillow's draft
    mode, in the DCT) while its short side stays ≥ 2 × ``min_side``; anything else, or any failure,
    goes to ``read_image``, which names the problem exactly as before.
    """

    def read(path: str) -> Image.Image:
        try:
            with open_regular_file(path) as f:  # never a FIFO or device; bounded size
                data = f.read()
            img = Image.open(io.BytesIO(data), formats=["JPEG"])  # the header only; JPEG only
        except Exception:  # missing, special, empty, not an image: read_image gives the reason
            return read_image(path)
        too_small = min(img.size) < 4 * min_side or img.width * img.height > MAX_PIXELS
        if (
            img.format != "JPEG"
            or img.mode not in ("L", "RGB")
            or too_small
            or size_problem(*img.size)
        ):
            return read_image(data, name=path)
        try:
            img.draft(img.mode, (2 * min_side, 2 * min_side))
            img.load()
        except Exception:  # truncated or corrupt
            return read_image(data, name=path)
        return ImageOps.exif_transpose(img) or img

    return read


def default_workers(device: torch.device) -> int:
    """Decoding overlaps the forward pass: all cores but one on GPU, half the cores on CPU."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    return max(1, min(32, cores - 1)) if device.type == "cuda" else max(1, cores // 2)


def worker_init(_: int) -> None:
    torch.set_num_threads(1)  # workers decode; the main process owns the cores for the model


def make_loader(
    dataset: Dataset[Item], *, batch_size: int, num_workers: int, device: torch.device
) -> DataLoader[Item]:
    """Ordered batches of ``dataset``; pinned on CUDA, decoded by ``num_workers`` processes."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
        worker_init_fn=worker_init if num_workers else None,
        prefetch_factor=(2 if device.type == "cuda" else 4) if num_workers else None,
    )


def to_device(
    batches: Iterable[Batch], device: torch.device, prepare: Callable[[torch.Tensor], torch.Tensor]
) -> Iterator[tuple[Batch, torch.Tensor | None]]:
    """Yield (batch, prepare(images on ``device``)); on CUDA batch i+1 is copied and prepared on a
    side stream while the caller's work on batch i runs (timm's ``PrefetchLoader``)."""
    if device.type != "cuda":
        for batch in batches:
            yield batch, None if batch.images is None else prepare(batch.images.to(device))
        return
    stream = torch.cuda.Stream(device)
    pending: tuple[Batch, torch.Tensor | None] | None = None
    for batch in batches:
        with torch.cuda.stream(stream):
            images = batch.images
            ready = None if images is None else prepare(images.to(device, non_blocking=True))
        if pending is not None:
            yield pending
        main = torch.cuda.current_stream(device)
        main.wait_stream(stream)  # the caller's next kernels see the finished copy
        if ready is not None:
            ready.record_stream(main)  # its memory is not reused before the caller is done with it
        pending = (batch, ready)
    if pending is not None:
        yield pending
