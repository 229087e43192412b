"""Training settings: ``TrainConfig`` (how an adapter is trained; stored in adapter.json) and
``TrainJobConfig`` (``dinosearch train``: which images, where to write, which backbone, plus all of
``TrainConfig``). Flags are generated from the fields (``core.config``); standard library only.

Names: ``batch_size`` is images per backbone forward everywhere (flag ``--batch-size``); positive
pairs per training step is ``pairs_per_step`` (flag ``--train-batch-size``). adapter.json files of
0.1 (``batch_size`` = pairs, ``extract_batch_size`` = images) load through ``from_dict``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

from dinosearch.backbones.config import BackboneSettings, RuntimeSettings
from dinosearch.core.config import like, opt

SameGroup = Literal["off", "mix", "only"]
_T = "training"


def _none_word(text: str | None) -> str | None:
    return None if text is None or text.strip().lower() in ("", "none", "null") else text


@dataclass(frozen=True)
class TrainConfig:
    """How to train an adapter (``dinosearch train``'s defaults); stored in adapter.json."""

    views: int = opt("augmented views cached per image (K): K(K-1)/2 pairs for K backbone passes", default=4, group=_T)  # fmt: skip
    clean_view: bool = opt("leave the eval view out of the pool", default=True, negate="--no-clean-view", group=_T)  # fmt: skip
    epochs: int = opt("passes over the training images (cheap: cached features)", default=60, group=_T)  # fmt: skip
    # 2*pairs-2 negatives per pair; 64 beat 256 on 600 CXR
    pairs_per_step: int = opt("positive pairs per step (--batch-size is images per backbone forward)", default=64, flag="--train-batch-size", group=_T)  # fmt: skip
    lr: float = opt("AdamW learning rate", default=1e-3, group=_T)
    weight_decay: float = opt("AdamW weight decay (weight matrices only)", default=0.05, group=_T)
    warmup: int = opt("warm-up epochs before cosine decay", default=3, group=_T)
    temperature: float = opt("InfoNCE temperature", default=0.1, group=_T)
    preset: str = opt("augmentation preset: xray or natural", default="xray", group=_T)
    hflip: bool | None = opt("horizontal flips (unset: the preset decides; off for xray)", default=None, group=_T)  # fmt: skip
    bottleneck: int = opt("adapter hidden width", default=512, group=_T)
    dropout: float = opt("adapter dropout", default=0.1, group=_T)
    residual_init: float = opt("initial weight of the adapter's residual branch", default=0.1, cli=False)  # fmt: skip
    seed: int = like(BackboneSettings, "seed")  # views, split, pair sampling, init and dropout
    val_fraction: float = opt("images held out (whole groups) for a val loss and best-epoch choice; 0: none", default=0.15, group=_T)  # fmt: skip
    group_column: str | None = opt("column grouping images of one patient: val split and same-group positives ('none' to disable)", default="patient_id", group=_T)  # fmt: skip
    label_column: str | None = opt("column for validation kNN precision only ('none' to disable)", default="label", group=_T)  # fmt: skip
    same_group_positives: SameGroup = opt("pair two images of one group (MICLe): mixed with view pairs or alone", default="off", group=_T)  # fmt: skip
    group_pair_prob: float = opt("in 'mix': chance an image with a group partner uses it", default=0.5, cli=False)  # fmt: skip
    select_by: Literal["loss", "knn"] = opt("best epoch by val loss or val kNN precision", default="loss", group=_T)  # fmt: skip
    knn_k: int = opt("neighbours for the val kNN precision", default=10, cli=False)
    online: bool = opt("fresh augmented views through the backbone every step (slow; for GPUs)", default=False, group=_T)  # fmt: skip
    batch_size: int | None = like(RuntimeSettings, "batch_size")
    num_workers: int | None = like(RuntimeSettings, "num_workers")

    def __post_init__(self) -> None:
        self.check_training()

    def check_training(self) -> None:
        """Refuse settings no training can run with (before any image is read)."""
        if not self.online and self.views + self.clean_view < 2:
            raise ValueError(f"--views {self.views} gives under 2 views per image; use --views ≥ 2")
        if self.epochs < 1 or self.pairs_per_step < 2:
            raise ValueError(
                f"--epochs {self.epochs} must be ≥ 1, --train-batch-size {self.pairs_per_step} ≥ 2"
            )
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"--val-fraction {self.val_fraction} must be in [0, 1)")
        if self.same_group_positives not in ("off", "mix", "only"):
            raise ValueError(
                f"same_group_positives {self.same_group_positives!r}: off, mix or only"
            )
        if self.online and self.same_group_positives != "off":
            raise ValueError("--online trains on view pairs only; drop --same-group-positives")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(TrainConfig)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """From adapter.json's ``train_config`` (any release; unknown keys ignored)."""
        data = dict(data)
        if "extract_batch_size" in data:  # 0.1: batch_size was pairs per step
            data["pairs_per_step"] = data.pop("batch_size", 64)
            data["batch_size"] = data.pop("extract_batch_size")
        known = {f.name for f in fields(TrainConfig)}
        return TrainConfig(**{k: v for k, v in data.items() if k in known})


def train_part(config: TrainConfig) -> TrainConfig:
    """The plain ``TrainConfig`` inside a job config that extends it (what adapter.json stores)."""
    return TrainConfig(**{f.name: getattr(config, f.name) for f in fields(TrainConfig)})


@dataclass(frozen=True)
class TrainJobConfig(TrainConfig, BackboneSettings, RuntimeSettings):
    """``dinosearch train``: images → cached views → an adapter folder."""

    images: str = opt("image folder (recursive) or CSV/Parquet manifest", required=True)
    out: str = opt("adapter folder to write", required=True)
    path_column: str | None = opt("manifest column holding image paths", default=None)
    limit: int | None = opt("use only the first N images", default=None)
    features: str | None = opt("a `dinosearch embed` folder of these images: reused as the clean view", default=None)  # fmt: skip
    cache_dir: str | None = opt("view cache root (default $DINOSEARCH_CACHE/views or ~/.cache/dinosearch/views)", default=None)  # fmt: skip

    def __post_init__(self) -> None:
        for name in ("group_column", "label_column"):  # 'none' on the command line or in a file
            object.__setattr__(self, name, _none_word(getattr(self, name)))
        self.check_training()
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit {self.limit}: must be ≥ 1 (or leave it out)")
