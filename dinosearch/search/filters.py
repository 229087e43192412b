"""Metadata filters and group exclusion: parsed once, turned into row masks and group codes per index."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from dinosearch.core.groups import MISSING, value_codes
from dinosearch.index.handle import IndexHandle

Filters = str | Mapping[str, Any] | None
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
        key = repr(sorted(filters.items())) if isinstance(filters, Mapping) else str(filters)
        if key not in self._masks:
            mask = np.ones(self.handle.count, dtype=bool)
            for column, op, value in parse_filters(filters):
                col = self._column(column)
                values = value if isinstance(value, list | tuple | set) else [value]
                match = col.isin([_coerce(v, col) for v in values]).to_numpy()
                mask &= match if op == "==" else ~match
            self._masks[key] = mask
        return self._masks[key]

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

    def _column(self, column: str) -> pd.Series:
        metadata = self.handle.metadata
        if column not in metadata.columns:
            raise ValueError(
                f"no metadata column {column!r} in {self.handle.version_dir / 'metadata.parquet'}; "
                f"columns are {list(metadata.columns)}"
            )
        return metadata[column]


def _coerce(value: Any, column: pd.Series) -> Any:
    """A filter value typed like ``column`` ("3" matches the integer 3)."""
    if isinstance(value, str) and pd.api.types.is_numeric_dtype(column):
        try:
            return float(value) if pd.api.types.is_float_dtype(column) else int(value)
        except ValueError:
            return value
    return value
