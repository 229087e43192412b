"""Draw a pair's map over both films: red patches make them more alike, blue ones less."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from dinosearch.explain.pair import PairExplanation
from dinosearch.explain.words import describe

RAISES = (215, 48, 39)  # red: the patch adds to the score
LOWERS = (49, 104, 190)  # blue: the patch takes from it
MATCH = (255, 221, 0)  # yellow lines: best-match correspondences
MAX_ALPHA = 0.7  # the strongest patch still lets the film show through
SATURATE = (
    1.0  # full colour: an effect of SATURATE × an even share of the score (|score| / patches)
)
LEGEND = (
    "Red: the patch makes the two films more alike; blue: less alike. Colour strength is the patch's "
    "effect, the first-order change of the score without it, relative to the score (square-root "
    "scale): full colour is an effect as large as an even share of the score (±{scale:.3g} = score "
    "/ patches), a quarter of that is half strength, and a map whose effects are tiny next to the "
    "score stays pale. Yellow lines, when shown, join a query patch to "
    "its most similar result patch: a correspondence, not a decomposition."
)


def scale_of(explanation: PairExplanation) -> float:
    """Full-colour effect: ``SATURATE`` × |score| / patches per film (never 0), not the map's max.

    A map whose effects are tiny next to the score is drawn pale, however it is spread.
    """
    m = explanation.map
    return float(max(SATURATE * abs(m.score) / m.query.size, 1e-12))


def overlay(view: Image.Image, shares: np.ndarray, scale: float) -> Image.Image:
    """The film (grey) under its (rows, cols) shares, each patch one flat colour block."""
    strength = np.sqrt(np.clip(np.abs(shares) / scale, 0, 1))  # (rows, cols); √ so 1% still shows
    colour = np.where(shares[..., None] >= 0, RAISES, LOWERS).astype(np.uint8)  # (rows, cols, 3)
    alpha = (strength * MAX_ALPHA * 255).round().astype(np.uint8)[..., None]
    layer = Image.fromarray(np.concatenate([colour, alpha], axis=-1), "RGBA")
    layer = layer.resize(view.size, Image.Resampling.NEAREST)
    return Image.alpha_composite(view.convert("L").convert("RGBA"), layer).convert("RGB")


def side_by_side(
    explanation: PairExplanation, *, matches: int = 0, panel: int = 320, gap: int = 16
) -> Image.Image:
    """Query and result overlays side by side on one scale; ``matches`` lines for the top query patches."""
    m, scale = explanation.map, scale_of(explanation)
    panels = [
        overlay(view, shares, scale).resize((panel, panel), Image.Resampling.BICUBIC)
        for view, shares in ((explanation.query_view, m.query), (explanation.result_view, m.result))
    ]
    out = Image.new("RGB", (2 * panel + gap, panel), "white")
    out.paste(panels[0], (0, 0))
    out.paste(panels[1], (panel + gap, 0))
    if matches and explanation.matches is not None:
        _draw_matches(out, explanation, matches, panel, gap)
    return out


def _draw_matches(
    canvas: Image.Image, explanation: PairExplanation, count: int, panel: int, gap: int
) -> None:
    """Lines from the ``count`` query patches with the largest shares to their best result patch."""
    assert explanation.matches is not None
    rows, cols = explanation.map.grid
    cell = panel / cols

    def centre(i: int, left: float) -> tuple[float, float]:
        return left + (i % cols + 0.5) * cell, (i // cols + 0.5) * cell

    draw = ImageDraw.Draw(canvas)
    for i in np.argsort(-explanation.map.query.ravel())[:count]:
        a, b = centre(int(i), 0), centre(int(explanation.matches[i]), panel + gap)
        draw.line([a, b], fill=MATCH, width=2)
        for x, y in (a, b):
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=MATCH)


def legend_bar(width: int = 320, scale: float | None = None, height: int = 12) -> Image.Image:
    """Blue → grey → red as the overlays draw −scale … 0 … +scale (√ scale), labelled underneath."""
    t = np.linspace(-1, 1, width)[None, :, None]  # (1, W, 1)
    grey = np.full((1, width, 3), 128.0)
    row = grey + (np.where(t >= 0, RAISES, LOWERS) - grey) * np.abs(t) * MAX_ALPHA
    bar = Image.fromarray(np.repeat(row, height, axis=0).round().astype(np.uint8), "RGB")
    size = max(13, width // 32)  # stays readable when the app shrinks the image to its column
    out = Image.new("RGB", (width, height + size + 8), "white")
    out.paste(bar, (0, 0))
    draw, font = ImageDraw.Draw(out), _font(size)
    amount = "" if scale is None else f" (±{scale:.3g})"
    left, right = f"less alike{amount}", f"more alike{amount}"
    draw.text((0, height + 3), left, fill=LOWERS, font=font)
    draw.text((width // 2 - 4, height + 3), "0", fill="black", font=font)
    draw.text(
        (width - draw.textlength(right, font=font), height + 3), right, fill=RAISES, font=font
    )
    return out


def figure(explanation: PairExplanation, title: str, *, matches: int = 0) -> Image.Image:
    """The CLI's PNG: a title, what the map is and how it sums, both overlays, and the legend."""
    pair = side_by_side(explanation, matches=matches)
    m = explanation.map
    lines = [
        title,
        *describe(m),
        f"score {m.score:.4f} · explained in {explanation.seconds:.2f} s",
        f"colour: each patch's effect relative to the score (full = ±{scale_of(explanation):.3g},"
        " an even share)",
    ]
    if matches:
        lines.append("yellow lines: best-match correspondences (not a decomposition)")
    font = _font(13)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    width = max(pair.width, *(int(probe.textlength(line, font=font)) for line in lines))
    text_h = 20 * len(lines) + 6
    legend = legend_bar(pair.width, scale_of(explanation))
    out = Image.new("RGB", (width + 20, text_h + pair.height + legend.height + 18), "white")
    draw = ImageDraw.Draw(out)
    for n, line in enumerate(lines):
        draw.text((10, 4 + 20 * n), line, fill="black", font=font)
    out.paste(pair, (10, text_h))
    out.paste(legend, (10, text_h + pair.height + 8))
    out.info["Description"] = "\n".join(lines)  # the same words, readable without the pixels
    return out


def save(image: Image.Image, path: str | Path) -> None:
    """Write a ``figure`` as PNG with its text lines in the file's Description field."""
    info = PngInfo()
    info.add_text("Description", str(image.info.get("Description", "")))
    image.save(path, format="PNG", pnginfo=info)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default(size=size)
