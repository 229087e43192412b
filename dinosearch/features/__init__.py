"""Features stage: images → N×D float32 backbone features; the features folder on disk."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dinosearch.core.lazy import lazy_exports

# public name → the module that defines it (imported on first use: `--help` stays light)
_API = {
    "extract_features": "dinosearch.features.extract",
    "iter_features": "dinosearch.features.extract",
    "FeatureSet": "dinosearch.features.folder",
    "embed_images": "dinosearch.features.folder",
    "embed_to_folder": "dinosearch.features.folder",
    "load_features": "dinosearch.features.folder",
}
__all__ = [
    "FeatureSet",
    "embed_images",
    "embed_to_folder",
    "extract_features",
    "iter_features",
    "load_features",
]

if TYPE_CHECKING:
    from dinosearch.features.extract import extract_features, iter_features
    from dinosearch.features.folder import FeatureSet, embed_images, embed_to_folder, load_features

__getattr__ = lazy_exports(__name__, _API, globals())
