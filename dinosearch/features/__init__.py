"""Features stage: images → N×D float32 backbone features; the features folder on disk."""

from dinosearch.features.extract import extract_features, iter_features
from dinosearch.features.folder import FeatureSet, embed_images, embed_to_folder, load_features

__all__ = [
    "FeatureSet",
    "embed_images",
    "embed_to_folder",
    "extract_features",
    "iter_features",
    "load_features",
]
