"""``dinosearch sync`` settings (stdlib only, so ``--help`` is instant)."""

from __future__ import annotations

from dataclasses import dataclass

from dinosearch.core.config import opt


@dataclass(frozen=True)
class SyncConfig:
    """Bring a features folder and its raw (and adapted) indexes in step with a DICOMweb archive."""

    archive: str = opt(
        "dicomweb+http://HOST:PORT/dicom-web[?QIDO-RS filters] (credentials: env only)",
        required=True,
    )
    features: str = opt("features folder kept in step (created on the first run)", required=True)
    index: str = opt("raw index folder to publish new versions into", required=True)
    adapted_index: str | None = opt("adapted index folder (needs --adapter)", default=None)
    adapter: str | None = opt("adapter folder for --adapted-index", default=None)
    watch: float | None = opt("repeat every SECONDS (None: once)", default=None, metavar="SECONDS")
    max_rounds: int | None = opt("with --watch: stop after N rounds (None: never)", default=None)
    shard_size: int = opt("new images per shard (the resume unit of a killed run)", default=1024)
    keep: int = opt("index versions to keep", default=3)
    # the backbone of a first run; later runs rebuild the one the features folder records
    backbone: str = opt(
        "backbone of a new features folder", default="dinov2_vits14", group="backbone"
    )
    weights: str = opt("weights of a new features folder", default="pretrained", group="backbone")
    image_size: int = opt("crop side of a new features folder", default=224, group="backbone")
    seed: int = opt("seed for random weights", default=0, group="backbone")
    device: str = opt("auto, cpu, cuda or cuda:N", default="auto", group="runtime")
    batch_size: int | None = opt(
        "images per forward (None: by device)", default=None, group="runtime"
    )
    workers: int | None = opt(
        "image-fetching workers (None: by device)", default=None, group="runtime"
    )
    progress: bool = opt("progress bars", default=True, negate="--no-progress", group="runtime")

    def __post_init__(self) -> None:
        if (self.adapted_index is None) != (self.adapter is None):
            raise ValueError("--adapted-index and --adapter go together; give both or neither")
        if self.watch is not None and self.watch < 0:
            raise ValueError(f"--watch {self.watch}: give a number of seconds ≥ 0")
        if self.shard_size < 1 or self.keep < 1:
            raise ValueError("--shard-size and --keep must be ≥ 1")
