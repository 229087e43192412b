"""SQL filters over an index's metadata: one DuckDB ``WHERE`` expression → (N,) bool row mask.

``patient_age >= 60 AND view IN ('PA','AP') AND study_date >= '2024-01-01'`` runs in-process on the
metadata Arrow table and can reach nothing else: DuckDB's external access (files, network,
extensions) is off and locked, the text must be ONE expression (no ``;``, no subquery, no table
function, only the listed scalar functions), and every column it names must be a metadata column.
The old syntax (``view == "PA" and label != normal``: unquoted or double-quoted values, ``==``,
``!=``, ``and``) is still read as before, by ``search.filters.parse_filters``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

ROW = "_dinosearch_row"
ALLOWED_CLASSES = {
    "CONJUNCTION", "COMPARISON", "OPERATOR", "CONSTANT", "COLUMN_REF", "BETWEEN", "CAST", "FUNCTION", "CASE",
}  # fmt: skip
ALLOWED_FUNCTIONS = {
    "~~", "!~~", "~~*", "!~~*",  # LIKE, NOT LIKE, ILIKE, NOT ILIKE
    "+", "-", "*", "/", "%", "lower", "upper", "trim", "length", "abs", "round", "coalesce",
    "year", "month", "day", "date_part", "strptime", "starts_with", "ends_with", "contains",
    "regexp_matches", "list_contains", "len",
}  # fmt: skip
_SETTINGS = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "threads": 1,
}


def where_mask(table: pa.Table, where: str, *, source: str = "the metadata") -> np.ndarray:
    """(N,) bool: rows of ``table`` for which the SQL expression ``where`` is true (NULL → False).

    Raises:
        ValueError: one line naming the filter and what to fix: not one expression, a subquery or
            function that is not allowed, an unknown column, or an error while evaluating it.
    """
    import duckdb

    check_where(where, table.column_names, source=source)
    rows = table.append_column(ROW, pa.array(np.arange(table.num_rows, dtype=np.int64)))
    con = duckdb.connect(":memory:", config=dict(_SETTINGS))
    try:
        con.execute("SET lock_configuration = true")
        con.register("metadata", rows)
        query = f"SELECT {ROW} FROM metadata WHERE ({where})"
        hits = con.execute(query).fetchnumpy()[ROW]
    except duckdb.Error as e:
        raise ValueError(f"filter {where!r} failed on {source}: {_first_line(e)}") from e
    finally:
        con.close()
    mask = np.zeros(table.num_rows, dtype=bool)
    mask[np.asarray(hits, dtype=np.int64)] = True
    return mask


def check_where(where: str, columns: Sequence[str], *, source: str = "the metadata") -> None:
    """Refuse anything but one expression over ``columns`` built from allowed operators/functions.

    Raises:
        ValueError: one line saying what is wrong and what to write instead.
    """
    import duckdb

    text = str(where).strip()
    hint = "write one expression such as \"patient_age >= 60 AND view IN ('PA','AP')\""
    if not text:
        raise ValueError(f"empty filter; {hint}")
    if ";" in text:
        raise ValueError(f"filter {text!r} contains ';'; {hint}")
    con = duckdb.connect(":memory:", config=dict(_SETTINGS))
    try:
        sql = f"SELECT * FROM metadata WHERE ({text})"
        tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0])  # type: ignore[index]
    finally:
        con.close()
    if tree.get("error"):
        raise ValueError(f"cannot read filter {text!r}: {tree.get('error_message')}; {hint}")
    statements = tree.get("statements", [])
    node = statements[0]["node"] if len(statements) == 1 else {}
    plain = node.get("type") == "SELECT_NODE" and not node.get("modifiers")
    if not plain or node.get("group_expressions") or node.get("having"):
        raise ValueError(f"filter {text!r} is not one expression; {hint}")
    known = set(columns) - {ROW}
    for part in _nodes(node["where_clause"]):
        _check_node(part, text, known, source)


def _check_node(part: dict[str, Any], text: str, known: set[str], source: str) -> None:
    kind = part["class"]
    if kind not in ALLOWED_CLASSES:
        what = "a subquery" if kind == "SUBQUERY" else f"a {kind.lower()} expression"
        raise ValueError(f"filter {text!r} uses {what}; only comparisons of columns with values")
    if kind == "FUNCTION" and str(part.get("function_name", "")).lower() not in ALLOWED_FUNCTIONS:
        raise ValueError(
            f"filter {text!r} calls {part.get('function_name')}(), which filters may not use; "
            f"allowed: {', '.join(sorted(f for f in ALLOWED_FUNCTIONS if f[0].isalpha()))}"
        )
    if kind == "COLUMN_REF":
        names = part.get("column_names", [])
        if len(names) != 1 or names[0] not in known:
            name = ".".join(names)
            raise ValueError(
                f"filter {text!r}: no metadata column {name!r} in {source}; "
                f"columns are {sorted(known)}"
            )


def _nodes(tree: Any) -> Iterator[dict[str, Any]]:
    """Every expression node (a dict with "class") of a serialised DuckDB expression, depth first."""
    if isinstance(tree, dict):
        if "class" in tree:
            if tree["class"] == "TYPE":  # a CAST's target type: no expression below
                return
            yield tree
        for key, value in tree.items():
            if key != "type_expr":
                yield from _nodes(value)
    elif isinstance(tree, list):
        for item in tree:
            yield from _nodes(item)


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
