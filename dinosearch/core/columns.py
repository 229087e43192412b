"""Column roles: which metadata column holds the label, the patient group and the source stratum.

One place for the defaults every stage falls back on. A default applies only where the column
exists; an empty string switches a role off; a name that is asked for must exist.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

Role = Literal["label", "group", "stratify"]

LABEL = "label"  # the finding; "a|b" for several
GROUP = "patient_id"  # one patient's films: never a query's own results, never split by training
STRATUM = "source_repo"  # where a film came from; public chest X-ray labels track it
DEFAULTS: dict[Role, str] = {"label": LABEL, "group": GROUP, "stratify": STRATUM}
RESULT_COLUMNS = ("rank", "score")  # search adds these to every result row: metadata may not


def resolve_column(columns: Iterable[str], asked: str | None, role: Role) -> str | None:
    """``asked`` (must be among ``columns``), '' → None, None → the role's default when present."""
    columns = list(columns)
    if asked == "":
        return None
    if asked is None:
        return DEFAULTS[role] if DEFAULTS[role] in columns else None
    if asked not in columns:
        raise ValueError(f"--{role}-column {asked!r} is not a metadata column; columns: {columns}")
    return asked


def resolve_roles(
    columns: Iterable[str],
    *,
    label: str | None = None,
    group: str | None = None,
    stratify: str | None = None,
) -> dict[Role, str | None]:
    """Every role resolved (see ``resolve_column``); the label is required."""
    columns = list(columns)
    roles: dict[Role, str | None] = {
        "label": resolve_column(columns, label, "label"),
        "group": resolve_column(columns, group, "group"),
        "stratify": resolve_column(columns, stratify, "stratify"),
    }
    if roles["label"] is None:
        raise ValueError(
            f"no label column among {columns}: retrieval is evaluated by label; pass "
            "--label-column or use labelled sub-folders"
        )
    return roles


def check_metadata_columns(columns: Iterable[str], where: str | object) -> None:
    """Refuse metadata that would collide with the columns search adds to every result row.

    Raises:
        ValueError: a column is named ``rank`` or ``score`` (the message says to rename it).
    """
    clash = [c for c in RESULT_COLUMNS if c in set(columns)]
    if clash:
        raise ValueError(
            f"{where}: column {clash[0]!r} is reserved for search results (each result row gets "
            f"its {' and '.join(RESULT_COLUMNS)}); rename it in your image manifest (e.g. to "
            f"'{clash[0]}_1'), then embed and index again"
        )
