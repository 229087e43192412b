"""Contact sheets: one PNG per finding kind, a row of captioned thumbnails per cluster, pair or film."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from dinosearch.inputs.images import ImageReadError, read_image

THUMB = 112  # thumbnail side in pixels
CAPTION = 28  # two caption lines under each thumbnail
PER_ROW = 8  # films shown per row at most (a larger cluster shows its first 8)

Row = tuple[str, Sequence[tuple[str, str]]]  # (row title, [(path, caption)])


def _thumb(path: str) -> Image.Image:
    try:
        image = read_image(path).convert("L")
    except ImageReadError:
        return Image.new("L", (THUMB, THUMB), 64)
    image.thumbnail((THUMB, THUMB), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return image


def contact_sheet(rows: Sequence[Row], path: Path) -> bool:
    """Draw ``rows`` into the PNG ``path``; False (nothing written) when there are no rows.

    Captions are drawn as pixels from plain text (ids, labels), never interpreted.
    """
    if not rows:
        return False
    title_h = 16
    cell_w, cell_h = THUMB + 8, THUMB + CAPTION + 4
    width = 8 + PER_ROW * cell_w
    sheet = Image.new("RGB", (width, len(rows) * (cell_h + title_h) + 8), "white")
    draw = ImageDraw.Draw(sheet)
    y = 4
    for title, films in rows:
        draw.text((6, y), title[:120], fill=(150, 0, 0))
        y += title_h
        for c, (film, caption) in enumerate(films[:PER_ROW]):
            x = 6 + c * cell_w
            thumb = _thumb(film)
            sheet.paste(thumb.convert("RGB"), (x + (THUMB - thumb.width) // 2, y))
            for line_no, line in enumerate(caption.split("\n")[:2]):
                draw.text((x, y + THUMB + 2 + 12 * line_no), line[:19], fill=(0, 0, 0))
        y += cell_h
    sheet.save(path, "PNG")
    return True
