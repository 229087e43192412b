"""Group exclusion and value coding, once: which gallery items a query must not see.

Values (patient ids, strata, labels) become integer codes shared by both sides; a missing value
(None/NaN) is ``MISSING`` and matches nothing, not even another missing value. Used by exact
ranking (training's validation, the A/B evaluation) and by ``Searcher``'s ``exclude_group``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

MISSING = -1  # the code of a missing value (and of a query value no gallery row has)


def value_codes(*arrays: Sequence[Any] | np.ndarray) -> list[np.ndarray]:
    """One (n_i,) int64 code array per input, codes shared across them; missing → ``MISSING``."""
    import pandas as pd

    both = pd.concat([pd.Series(list(a), dtype=object) for a in arrays], ignore_index=True)
    codes, _ = pd.factorize(both, use_na_sentinel=True)  # NaN/None → -1
    codes = codes.astype(np.int64)
    ends = np.cumsum([len(a) for a in arrays])
    return list(np.split(codes, ends[:-1]))


def same_group(query_codes: np.ndarray, gallery_codes: np.ndarray) -> np.ndarray:
    """(Q,) or (Q, 1), (G,) or (Q, G) codes → (Q, G) bool: same known group (missing matches none)."""
    q = np.asarray(query_codes)
    q = q[:, None] if q.ndim == 1 else q
    return (q == np.asarray(gallery_codes)) & (q >= 0)


def exclusion_mask(
    query_ids: np.ndarray,
    gallery_ids: np.ndarray,
    query_groups: np.ndarray | None = None,
    gallery_groups: np.ndarray | None = None,
    query_strata: np.ndarray | None = None,
    gallery_strata: np.ndarray | None = None,
) -> np.ndarray:
    """(Q, G) bool of gallery items a query must not see.

    Excluded: the query itself (same id), items of its group (when groups are given; missing
    groups match nothing), and, when strata are given, items of *other* strata (within-stratum
    retrieval).
    """
    mask = np.asarray(query_ids)[:, None] == np.asarray(gallery_ids)[None, :]
    if query_groups is not None and gallery_groups is not None:
        qg, gg = value_codes(query_groups, gallery_groups)
        mask |= same_group(qg, gg)
    if query_strata is not None and gallery_strata is not None:
        qs, gs = value_codes(query_strata, gallery_strata)
        mask |= qs[:, None] != gs[None, :]
    return mask
