"""Checked fields of the JSON files the tool loads: an error names the file, the field and the fix."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

Kind = Literal["count", "positive", "number", "fraction", "str", "object", "list"]


def _integer(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v: Any) -> bool:
    return (_integer(v) or isinstance(v, float)) and math.isfinite(v)


KINDS: dict[Kind, tuple[str, Callable[[Any], bool]]] = {
    "count": ("an integer ≥ 0", lambda v: _integer(v) and v >= 0),
    "positive": ("an integer ≥ 1", lambda v: _integer(v) and v >= 1),
    "number": ("a finite number", _number),
    "fraction": ("a number in [0, 1)", lambda v: _number(v) and 0 <= v < 1),
    "str": ("a string", lambda v: isinstance(v, str)),
    "object": ("a JSON object", lambda v: isinstance(v, dict)),
    "list": ("a JSON list", lambda v: isinstance(v, list)),
}


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


_MISSING = object()


def _lookup(data: Any, dotted: str) -> Any:
    """``data["a"]["b.c"]`` for ``"a.b.c"``: a key may hold dots ("checksums.index.faiss")."""
    value, rest = data, dotted
    while isinstance(value, Mapping):
        if rest in value:
            return value[rest]
        head, sep, rest = rest.partition(".")
        if not sep or head not in value:
            break
        value = value[head]
    return _MISSING


def check_fields(
    data: Mapping[str, Any], spec: Mapping[str, Kind], path: Path | str, fix: str
) -> None:
    """Each dotted field of ``spec`` (``"backbone.fingerprint"``) is present in ``data`` and of its kind.

    Raises:
        ValueError: ``{path}: field 'dim' is [32], expected an integer ≥ 1; {fix}``.
    """
    for dotted, kind in spec.items():
        value = _lookup(data, dotted)
        if value is _MISSING:
            raise ValueError(f"{path}: field {dotted!r} is missing; {fix}")
        description, ok = KINDS[kind]
        if not ok(value):
            raise ValueError(
                f"{path}: field {dotted!r} is {_show(value)}, expected {description}; {fix}"
            )
