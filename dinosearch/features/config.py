"""``dinosearch embed``'s settings (standard library only: ``--help`` never waits for torch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dinosearch.backbones.config import BackboneSettings, RuntimeSettings
from dinosearch.core.config import opt

Engine = Literal["local", "ray"]
ENGINES: tuple[Engine, ...] = ("local", "ray")


@dataclass(frozen=True)
class EmbedConfig(BackboneSettings, RuntimeSettings):
    """Images → a features folder (features.npy + metadata.parquet + manifest.json)."""

    images: str = opt("image folder (recursive) or CSV/Parquet manifest", required=True)
    out: str = opt("features folder to write", required=True)
    path_column: str | None = opt("manifest column holding image paths", default=None)
    folder_labels: bool = opt("do not take labels from sub-folders", default=True, negate="--no-folder-labels")  # fmt: skip
    limit: int | None = opt("embed only the first N images (stable order)", default=None)
    shard_size: int = opt("images per shard (resume unit)", default=4096)
    resume: bool = opt("continue an interrupted run, keeping its shards", default=False)
    engine: Engine = opt('local: this process; ray: a Ray Data pipeline of model replicas (pip install "dinosearch[ray]")', default="local")  # fmt: skip
    address: str | None = opt("--engine ray: the cluster to join (auto, ray://HEAD:10001); default: start a local one", default=None)  # fmt: skip
    actors: int | None = opt("--engine ray: model replicas (default: one per GPU, else one per CPU)", default=None)  # fmt: skip

    def __post_init__(self) -> None:
        if self.engine == "local" and (self.address or self.actors):
            raise ValueError("--address and --actors apply to --engine ray; add --engine ray")
        if self.limit is not None and self.limit < 0:
            raise ValueError(f"--limit {self.limit}: must be ≥ 0 (or leave it out)")
        if self.shard_size < 1:
            raise ValueError(f"--shard-size {self.shard_size}: must be ≥ 1")
        if self.actors is not None and self.actors < 1:
            raise ValueError(f"--actors {self.actors}: must be ≥ 1 (or leave it out)")
