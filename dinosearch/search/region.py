"""Region queries: backbone features of one box of a query film, comparable with whole-film vectors.

Two ways, both giving (D_backbone,) features pooled as the index's backbone pools:
- ``"crop"`` (default): cut the box out of the film and embed it as a film of its own (resized like
  any query). Works for every backbone and pooling.
- ``"tokens"``: run the film through the ViT's patch embedding, keep only the patch tokens whose
  centre lies in the box (with the CLS/register tokens and their position embeddings), and pool the
  final tokens. The region keeps the film's scale and position; DINOv2 backbones only.

A box is ``(x0, y0, x1, y1)`` in query-image pixels (x right, y down, x1/y1 exclusive).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from PIL import Image

if TYPE_CHECKING:
    from dinosearch.backbones import Backbone
    from dinosearch.backbones.transforms import ImageTransform

Box = tuple[float, float, float, float]
RegionMethod = Literal["crop", "tokens"]
REGION_METHODS: tuple[str, ...] = ("crop", "tokens")  # also search/config.py (kept light)


def parse_box(text: str | Sequence[float]) -> Box:
    """``"x0,y0,x1,y1"`` or 4 numbers → a box; ValueError naming the text otherwise."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    try:
        x0, y0, x1, y1 = (float(p) for p in parts)
    except (TypeError, ValueError) as e:
        raise ValueError(f"region {text!r}: write it as x0,y0,x1,y1 in query-image pixels") from e
    if not (x1 > x0 and y1 > y0) or min(x0, y0) < 0:
        raise ValueError(f"region {text!r}: need 0 ≤ x0 < x1 and 0 ≤ y0 < y1 (pixels)")
    return x0, y0, x1, y1


def clip_box(box: Box, size: tuple[int, int], *, where: str = "the query") -> Box:
    """``box`` clipped to an image of ``size`` (W, H); ValueError when nothing is left."""
    w, h = size
    x0, y0, x1, y1 = max(box[0], 0), max(box[1], 0), min(box[2], w), min(box[3], h)
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise ValueError(f"region {box} lies outside {where} ({w}×{h} pixels); draw it on the film")
    return x0, y0, x1, y1


def crop_image(image: Image.Image, box: Box) -> Image.Image:
    """The box's pixels as a new image."""
    x0, y0, x1, y1 = clip_box(box, image.size)
    return image.crop((int(x0), int(y0), int(np.ceil(x1)), int(np.ceil(y1))))


def box_patches(box: Box, size: tuple[int, int], backbone: Backbone) -> np.ndarray:
    """Flat indices (n,) of the patch grid whose centres fall inside ``box`` after the eval
    preprocessing (short side resized to ``resize_size``, centre crop ``image_size``); at least the
    patch nearest the box centre when the box is smaller than a patch."""
    pre, patch = backbone.preprocess, backbone.patch_size
    rows, cols = backbone.grid
    x0, y0, x1, y1 = clip_box(box, size)
    w, h = size
    scale = pre.resize_size / min(w, h)
    ox, oy = (round(w * scale) - pre.image_size) / 2, (round(h * scale) - pre.image_size) / 2
    cx = (np.arange(cols) + 0.5) * patch + ox  # patch centres in resized-image pixels
    cy = (np.arange(rows) + 0.5) * patch + oy
    in_x = (cx >= x0 * scale) & (cx < x1 * scale)
    in_y = (cy >= y0 * scale) & (cy < y1 * scale)
    inside = np.flatnonzero((in_y[:, None] & in_x[None, :]).ravel())
    if len(inside):
        return inside
    mx, my = (x0 + x1) / 2 * scale, (y0 + y1) / 2 * scale
    c, r = int(np.argmin(np.abs(cx - mx))), int(np.argmin(np.abs(cy - my)))
    if not (0 <= mx - ox < pre.image_size and 0 <= my - oy < pre.image_size):
        raise ValueError(
            f"region {box} lies outside the centre crop the model sees; move it inwards"
        )
    return np.array([r * cols + c], dtype=np.int64)


def token_features(backbone: Backbone, image: torch.Tensor, patches: np.ndarray) -> torch.Tensor:
    """(3, S, S) preprocessed film, (n,) patch indices → (D_backbone,) features of those patches
    alone through the ViT (prefix tokens kept), pooled as ``backbone.pool`` does."""
    backbone._require_tokens()
    model: Any = backbone.model
    device = next(backbone.parameters()).device
    x = image[None].to(device=device, dtype=backbone.input_dtype)
    with torch.inference_mode():
        x = model._pos_embed(model.patch_embed(x))  # (1, prefix + N, width)
        prefix = backbone.num_prefix_tokens
        keep = torch.cat([torch.arange(prefix), prefix + torch.as_tensor(patches)]).to(device)
        x = model.norm_pre(x[:, keep])
        x = model.norm(model.blocks(x))
        return backbone.pool(x)[0].float().cpu()


def region_features(
    backbone: Backbone,
    transform: ImageTransform,
    image: Image.Image,
    box: Box,
    method: RegionMethod = "crop",
) -> np.ndarray:
    """(D_backbone,) float32 backbone features of ``box`` of ``image`` (see the module doc)."""
    if method == "crop":
        batch = transform(crop_image(image, box))[None]
        device = next(backbone.parameters()).device
        with torch.inference_mode():
            return backbone(batch.to(device))[0].float().cpu().numpy()
    if method == "tokens":
        patches = box_patches(box, image.size, backbone)
        return token_features(backbone, transform(image), patches).numpy()
    raise ValueError(f"region method {method!r}: use one of {', '.join(REGION_METHODS)}")
