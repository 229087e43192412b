"""The request fields of issue 25's refinements: which index each mark is for, the region crop, and
the privacy rule for ``filter``/``collapse`` (only the columns the server shows may be read)."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from dinosearch.serve.errors import ApiError
from dinosearch.serve.models import SearchParams

PATIENT_COLUMN = "patient_id"  # what ``"collapse": true`` collapses on


def check_columns(params: SearchParams, shown: Sequence[str], columns: Sequence[str]) -> None:
    """422 when ``filter`` or ``collapse`` reads a column not in ``shown`` (a hidden column must not
    be probed through the rows it selects); ``columns``: the index's metadata columns (to read a
    text filter as the Searcher will)."""
    collapse = params.collapse
    if isinstance(collapse, str) and collapse not in (PATIENT_COLUMN, *shown):
        raise ApiError(422, f"collapse {collapse!r}: use true or one of {', '.join(shown)}")
    filters = params.filter
    if isinstance(filters, dict):
        hidden = [c for c in filters if c not in shown]
        if hidden:
            raise ApiError(422, f"filter column {hidden[0]!r} is not shown by this server")
    elif filters:
        try:
            _check_text_filter(filters, shown, columns)
        except ValueError as e:
            raise ApiError(422, str(e)) from e


def marks_of(params: SearchParams, name: str) -> tuple[list[str], list[str]]:
    """Index ``name``'s (like ids, unlike ids): a list applies to every index, a dict per name."""
    like, unlike = params.like, params.unlike
    return (
        like if isinstance(like, list) else like.get(name, []),
        unlike if isinstance(unlike, list) else unlike.get(name, []),
    )


def check_marks(params: SearchParams, searched: Sequence[str]) -> None:
    """422 when ``like``/``unlike`` name an index this request does not search."""
    names = set(searched)
    for field, marks in (("like", params.like), ("unlike", params.unlike)):
        extra = sorted(set(marks) - names) if isinstance(marks, dict) else []
        if extra:
            raise ApiError(422, f"{field} names {extra[0]!r}, not an index this request searches")


def _check_text_filter(text: str, shown: Sequence[str], columns: Sequence[str]) -> None:
    """ValueError unless ``text`` reads only ``shown`` columns, read as the Searcher reads it: SQL
    when it is valid SQL over the index's ``columns``, else the old ``col == value and …``."""
    from dinosearch.search.filters import parse_filters
    from dinosearch.search.where import check_where

    try:
        check_where(text, columns)
    except ValueError:
        hidden = [c for c, _, _ in parse_filters(text) if c not in shown]
        if hidden:
            raise ValueError(
                f"filter column {hidden[0]!r} is not shown by this server; filter on shown columns"
            ) from None
        return
    check_where(text, shown, source="the columns this server shows")


def cropped(image: Image.Image, region: Sequence[float]) -> Image.Image:
    """The query's box (pixels) as an image; 422 naming the box when it is empty or outside."""
    from dinosearch.search.region import crop_image, parse_box

    try:
        return crop_image(image, parse_box(list(region)))
    except ValueError as e:
        raise ApiError(422, str(e)) from e
