"""What metadata may be shown: ONE setting for the app's cards and ``dinosearch search`` output.

A visitor sees ``rank``, ``score`` and the SAFE_COLUMNS present; every other column (``id`` — for a
folder input the file's relative path —, ``path``, ``patient_id``, DICOM header fields copied into a
manifest) only where whoever runs the server allows it: ``--show-columns id,patient_id`` or
``DINOSEARCH_SHOW_COLUMNS=id,patient_id``. ``dinosearch search`` applies the same rule when asked
(``--hide-identifiers`` or ``DINOSEARCH_HIDE_IDENTIFIERS=1``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dinosearch.core.env import env_str

SAFE_COLUMNS = ("label", "view", "source_repo")
ALWAYS_SHOWN = ("rank", "score")  # not metadata: where a result stands
SHOW_COLUMNS_ENV = "DINOSEARCH_SHOW_COLUMNS"
HIDE_IDENTIFIERS_ENV = "DINOSEARCH_HIDE_IDENTIFIERS"
_YES = ("1", "true", "yes", "on")


def parse_columns(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"a, b"`` or ``["a", "b"]`` → ``("a", "b")`` (blanks dropped)."""
    items = text.split(",") if isinstance(text, str) else list(text or ())
    return tuple(c.strip() for c in items if c.strip())


def allowed_columns(show_columns: Sequence[str]) -> tuple[str, ...]:
    """SAFE_COLUMNS, then the columns the server allows on top (no duplicates)."""
    return tuple(dict.fromkeys([*SAFE_COLUMNS, *show_columns]))


def hide_identifiers_from_env(env: Mapping[str, str]) -> bool:
    """Whether ``DINOSEARCH_HIDE_IDENTIFIERS`` asks for the app's privacy rule."""
    return (env_str(HIDE_IDENTIFIERS_ENV, env) or "").strip().lower() in _YES


def visible_record(record: Mapping[str, Any], show_columns: Sequence[str]) -> dict[str, Any]:
    """``record`` keeping only rank, score and the allowed columns (in that order)."""
    keep = [*ALWAYS_SHOWN, *allowed_columns(show_columns)]
    return {c: record[c] for c in dict.fromkeys(keep) if c in record}
