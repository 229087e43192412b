"""The query embedder: image (path, bytes or PIL) → backbone features → adapter → unit query vector."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from dinosearch.adapt.vectors import to_vectors
from dinosearch.backbones import Backbone, backbone_from_info
from dinosearch.backbones.transforms import ImageTransform, eval_transform
from dinosearch.index.handle import IndexHandle
from dinosearch.inputs.images import read_image
from dinosearch.search.region import Box, RegionMethod, region_features

if TYPE_CHECKING:
    from dinosearch.adapt.adapter import DomainAdapter

ImageSource = str | Path | bytes | Image.Image


class QueryEmbedder:
    """Embeds query images exactly as an index's vectors were made: same backbone, preprocessing, adapter.

    Split in two so that one backbone forward can feed several indexes: ``image_features`` runs the
    (shareable) backbone, ``embed_features`` applies this index's adapter and normalises.

    Args:
        backbone: the loaded backbone (may be shared with other embedders).
        adapter: the index's adapter, already on the backbone's device; None for a raw index.
    """

    def __init__(self, backbone: Backbone, adapter: DomainAdapter | None = None) -> None:
        self.backbone = backbone
        self.adapter = adapter
        self._transform: ImageTransform | None = None  # built on the first image query

    @classmethod
    def for_index(
        cls, handle: IndexHandle, *, backbone: Backbone | None = None, device: torch.device
    ) -> QueryEmbedder:
        """The embedder of ``handle``'s vectors; ``backbone`` is shared when given, else loaded.

        Raises:
            ValueError: ``backbone`` is not the one the index was made with, or its adapter changed.
        """
        info = handle.manifest["backbone"]
        if backbone is None:
            backbone = backbone_from_info(info, device=device, source=handle.manifest_path)
        elif backbone.fingerprint != info["fingerprint"]:
            raise ValueError(
                f"backbone {backbone.fingerprint!r} does not match {handle.manifest_path}, "
                f"made with {info['fingerprint']!r}; pass that backbone or none"
            )
        adapter = handle.load_adapter()
        return cls(backbone, None if adapter is None else adapter.to(device).eval())

    @property
    def transform(self) -> ImageTransform:
        """The backbone's eval preprocessing: PIL image → (3, S, S) tensor."""
        if self._transform is None:
            self._transform = eval_transform(self.backbone.preprocess)
        return self._transform

    def image_features(self, sources: Sequence[ImageSource]) -> np.ndarray:
        """(B, D_backbone) float32 backbone features of query images (one forward pass)."""
        batch = torch.stack([self.transform(_as_image(s)) for s in sources])  # (B, 3, S, S)
        device = next(self.backbone.parameters()).device
        with torch.inference_mode():
            return self.backbone(batch.to(device)).float().cpu().numpy()

    def region_features(
        self, sources: Sequence[ImageSource], box: Box, method: RegionMethod = "crop"
    ) -> np.ndarray:
        """(B, D_backbone) backbone features of one box of each query image (``search.region``)."""
        return np.stack(
            [
                region_features(self.backbone, self.transform, _as_image(s), box, method)
                for s in sources
            ]
        )

    def embed_features(self, features: np.ndarray) -> np.ndarray:
        """Backbone features (B, D_backbone) or (D_backbone,) → (B, D) unit query vectors."""
        return to_vectors(np.atleast_2d(np.asarray(features, dtype=np.float32)), self.adapter)

    def embed_images(self, sources: Sequence[ImageSource]) -> np.ndarray:
        """Query images (path, bytes or PIL) → (B, D) unit query vectors."""
        return self.embed_features(self.image_features(sources))

    def embed_image(self, source: ImageSource) -> np.ndarray:
        """One image (path, bytes or PIL) → (D,) unit query vector."""
        return self.embed_images([source])[0]


def _as_image(source: ImageSource) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    return read_image(source)
