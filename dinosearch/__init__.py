"""dinosearch: image search on domain-adapted DINOv2 embeddings.

The pipeline, one stage per sub-package (docs/architecture.md)::

    from dinosearch import load_backbone, embed_images, train_adapter, build_index, Searcher

    backbone = load_backbone("dinov2_vits14", "pretrained")
    embed_images("films/", backbone, "runs/cxr/features")
    train_adapter("films/", backbone, "runs/cxr/adapter", clean_features="runs/cxr/features")
    build_index("runs/cxr/features", "indexes/cxr-raw")
    build_index("runs/cxr/features", "indexes/cxr-adapted", adapter_dir="runs/cxr/adapter")
    Searcher("indexes/cxr-adapted", backbone=backbone).search_image("query.png", k=5).rows
    evaluate_indexes("indexes/cxr-raw", "indexes/cxr-adapted", "reports/cxr")

Names are imported on first use, so ``import dinosearch`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name → the module that defines it
_API = {
    "Backbone": "dinosearch.backbones",
    "load_backbone": "dinosearch.backbones",
    "list_backbones": "dinosearch.backbones",
    "read_image": "dinosearch.inputs",
    "ImageReadError": "dinosearch.inputs",
    "load_records": "dinosearch.inputs",
    "embed_images": "dinosearch.features",
    "load_features": "dinosearch.features",
    "TrainConfig": "dinosearch.adapt",
    "train_adapter": "dinosearch.adapt",
    "load_adapter": "dinosearch.adapt",
    "to_vectors": "dinosearch.adapt",
    "build_index": "dinosearch.index",
    "open_index": "dinosearch.index",
    "Searcher": "dinosearch.search",
    "evaluate_indexes": "dinosearch.evaluate",
    "DemoConfig": "dinosearch.demo",
    "run_demo": "dinosearch.demo",
}
__all__ = [
    "Backbone",
    "DemoConfig",
    "ImageReadError",
    "Searcher",
    "TrainConfig",
    "build_index",
    "embed_images",
    "evaluate_indexes",
    "list_backbones",
    "load_adapter",
    "load_backbone",
    "load_features",
    "load_records",
    "open_index",
    "read_image",
    "run_demo",
    "to_vectors",
    "train_adapter",
]

if TYPE_CHECKING:
    from dinosearch.adapt import TrainConfig, load_adapter, to_vectors, train_adapter
    from dinosearch.backbones import Backbone, list_backbones, load_backbone
    from dinosearch.demo import DemoConfig, run_demo
    from dinosearch.evaluate import evaluate_indexes
    from dinosearch.features import embed_images, load_features
    from dinosearch.index import build_index, open_index
    from dinosearch.inputs import ImageReadError, load_records, read_image
    from dinosearch.search import Searcher


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'dinosearch' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value
