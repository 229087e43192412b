"""dinosearch: image search on domain-adapted DINOv2 embeddings."""

from dinosearch.backbones import Backbone, load_backbone
from dinosearch.inputs.images import ImageReadError, read_image

__all__ = ["Backbone", "ImageReadError", "load_backbone", "read_image"]
