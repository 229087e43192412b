"""Adapt stage: the domain adapter, its loss, views and training; features → unit vectors."""

from dinosearch.adapt.adapter import AdapterConfig, DomainAdapter, load_adapter, save_adapter
from dinosearch.adapt.config import TrainConfig
from dinosearch.adapt.losses import info_nce
from dinosearch.adapt.train import TrainResult, train_adapter
from dinosearch.adapt.vectors import l2_normalize, to_vectors

__all__ = [
    "AdapterConfig",
    "DomainAdapter",
    "TrainConfig",
    "TrainResult",
    "info_nce",
    "l2_normalize",
    "load_adapter",
    "save_adapter",
    "to_vectors",
    "train_adapter",
]
