"""Adapt stage: the domain adapter, its loss, views and training; features → unit vectors."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dinosearch.core.lazy import lazy_exports

# public name → the module that defines it (imported on first use: `--help` stays light)
_API = {
    "AdapterConfig": "dinosearch.adapt.adapter",
    "DomainAdapter": "dinosearch.adapt.adapter",
    "load_adapter": "dinosearch.adapt.adapter",
    "save_adapter": "dinosearch.adapt.adapter",
    "TrainConfig": "dinosearch.adapt.config",
    "info_nce": "dinosearch.adapt.losses",
    "TrainResult": "dinosearch.adapt.train",
    "train_adapter": "dinosearch.adapt.train",
    "l2_normalize": "dinosearch.adapt.vectors",
    "to_vectors": "dinosearch.adapt.vectors",
}
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

if TYPE_CHECKING:
    from dinosearch.adapt.adapter import AdapterConfig, DomainAdapter, load_adapter, save_adapter
    from dinosearch.adapt.config import TrainConfig
    from dinosearch.adapt.losses import info_nce
    from dinosearch.adapt.train import TrainResult, train_adapter
    from dinosearch.adapt.vectors import l2_normalize, to_vectors

__getattr__ = lazy_exports(__name__, _API, globals())
