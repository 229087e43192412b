"""Metadata filters and group exclusion: parsed once, turned into row masks and group codes per index.

A filter is a mapping (``{"view": "PA"}``, a list value means "any of"), an SQL expression run by
DuckDB over the metadata (``search.where``), or the old ``column == value and …`` syntax, which is
read the old way when the text is not a valid SQL filter (unquoted values, double-quoted values).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from dinosearch.core.groups import MISSING, value_codes
from dinosearch.index.handle import IndexHandle
from dinosearch.search.where import check_where, where_mask

Filters = str | Mapping[str, Any] | list[str] | tuple[str, ...] | None  # a list: all of them
GroupExclusion = tuple[str, Any] | None  # (column, value) or (column, [one value per query])
_CLAUSE = re.compile(r"^\s*(\w+)\s*(==|!=|=)\s*(.+?)\s*$")


def parse_filters(filters: Filters) -> list[tuple[str, str, Any]]:
    """``{"view": "PA"}`` or ``'view == "PA" and label != normal'`` → [(column, "=="|"!=", value)]."""
    if not filters:
        return []
    if isinstance(filters, Mapping):
        return [(str(c), "==", v) for c, v in filters.items()]
    clauses = []
    for part in re.split(r"\s+and\s+", str(filters).strip()):
        m = _CLAUSE.match(part)
        if not m:
            raise ValueError(
                f"cannot read filter {part!r}; write it as 'column == value' (joined by 'and')"
            )
        column, op, value = m.groups()
        clauses.append((column, "!=" if op == "!=" else "==", value.strip().strip("'\"")))
    return clauses


class RowFilters:
    """Row masks and group codes over one index version's metadata, cached per filter and column."""

    def __init__(self, handle: IndexHandle) -> None:
        self.handle = handle
        self._masks: dict[str, np.ndarray] = {}
        self._groups: dict[str, tuple[np.ndarray, dict[Any, int]]] = {}

    def mask(self, filters: Filters) -> np.ndarray | None:
        """(N,) bool rows passing ``filters``; None when there are none."""
        if not filters:
            return None
        if isinstance(filters, list | tuple):
            masks = [m for m in (self.mask(f) for f in filters) if m is not None]
            return np.logical_and.reduce(masks) if masks else None
        key = repr(sorted(filters.items())) if isinstance(filters, Mapping) else str(filters)
        if key not in self._masks:
            if isinstance(filters, Mapping):
                self._masks[key] = self._clauses_mask(parse_filters(filters))
            else:
                self._masks[key] = self._text_mask(str(filters))
        return self._masks[key]

    def _text_mask(self, text: str) -> np.ndarray:
        """SQL first; the old ``col == value and …`` grammar when the SQL check refuses the text."""
        source = str(self.handle.version_dir / "metadata.parquet")
        try:
            check_where(text, self.handle.table.column_names, source=source)
        except ValueError:
            old = _old_clauses(text)
            if old is None:
                raise
            try:
                return self._clauses_mask(old)
            except ValueError as e:
                raise ValueError(f"filter {text!r}: {e}") from e
        return where_mask(self.handle.table, text, source=source)

    def _clauses_mask(self, clauses: list[tuple[str, str, Any]]) -> np.ndarray:
        mask = np.ones(self.handle.count, dtype=bool)
        for column, op, value in clauses:
            col = self._column(column)
            values = value if isinstance(value, list | tuple | set) else [value]
            match = col.isin([_coerce(v, col) for v in values]).to_numpy()
            mask &= match if op == "==" else ~match
        return mask

    def groups(self, exclude: GroupExclusion, b: int) -> tuple[np.ndarray, np.ndarray] | None:
        """((N,) code of each row's group, (B,) code of each query's group; -1 matches nothing)."""
        if exclude is None:
            return None
        column, value = exclude
        col = self._column(column)
        if column not in self._groups:
            codes = value_codes(col)[0]  # missing values: MISSING, which matches nothing
            known = codes >= 0
            self._groups[column] = (codes, dict(zip(col[known], codes[known], strict=True)))
        codes, lookup = self._groups[column]
        values = (
            list(value) if isinstance(value, list | tuple | np.ndarray | pd.Series) else [value] * b
        )
        if len(values) != b:
            raise ValueError(
                f"exclude_group has {len(values)} values for {b} queries; give one per query"
            )
        query = [lookup.get(_coerce(v, col), MISSING) for v in values]
        return codes, np.array(query, dtype=np.int64)

    def codes(self, column: str) -> np.ndarray:
        """(N,) int64 code of each row's ``column`` value (missing values: -1, each its own case)."""
        if column not in self._groups:
            self.groups((column, None), 1)
        return self._groups[column][0]

    def rows_of_ids(self, ids: Any) -> np.ndarray:
        """Row numbers of metadata ``id`` values, in order; ValueError naming any id not found."""
        wanted = [str(i) for i in ids]
        if not wanted:
            return np.zeros(0, dtype=np.int64)
        known = pd.Series(np.arange(self.handle.count), index=self._column("id").astype(str))
        known = known[~known.index.duplicated()]
        missing = [i for i in wanted if i not in known.index]
        if missing:
            raise ValueError(
                f"no id {missing[0]!r} in {self.handle.version_dir / 'metadata.parquet'}; "
                "mark results of this index (their id column)"
            )
        return known.loc[wanted].to_numpy(dtype=np.int64)

    def _column(self, column: str) -> pd.Series:
        metadata = self.handle.metadata
        if column not in metadata.columns:
            raise ValueError(
                f"no metadata column {column!r} in {self.handle.version_dir / 'metadata.parquet'}; "
                f"columns are {list(metadata.columns)}"
            )
        return metadata[column]


def _old_clauses(text: str) -> list[tuple[str, str, Any]] | None:
    """The old syntax's clauses, or None when ``text`` is not written in it (or holds ; or brackets)."""
    if any(c in text for c in ";()"):
        return None
    try:
        return parse_filters(text)
    except ValueError:
        return None


def _coerce(value: Any, column: pd.Series) -> Any:
    """A filter value typed like ``column`` ("3" matches the integer 3)."""
    if isinstance(value, str) and pd.api.types.is_numeric_dtype(column):
        try:
            return float(value) if pd.api.types.is_float_dtype(column) else int(value)
        except ValueError:
            return value
    return value
