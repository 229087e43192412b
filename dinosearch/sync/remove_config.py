"""``dinosearch remove`` settings (standard library only, so ``--help`` stays instant)."""

from __future__ import annotations

from dataclasses import dataclass

from dinosearch.core.config import opt


@dataclass(frozen=True)
class RemoveConfig:
    """Which rows to erase, and from where (``sync.erase.remove`` runs it)."""

    # --index is repeatable (and takes comma lists): the CLI adds it itself, so cli=False here.
    index: tuple[str, ...] = opt("index folders to remove the rows from", default=(), cli=False)
    ids: str | None = opt(
        "file of ids to remove, one per line (archive films: the SOP Instance UID)",
        default=None,
        metavar="FILE",
    )
    where: str | None = opt(
        "remove the rows matching this filter, e.g. \"patient_id == 'P1'\" (search's syntax)",
        default=None,
        metavar="FILTER",
    )
    features: tuple[str, ...] = opt(
        "further features folders to drop the rows from (those the indexes name always are)",
        default=(),
        metavar="FOLDERS",
    )
    cache_dir: str | None = opt(
        "view cache to scrub (default: $DINOSEARCH_CACHE/views or ~/.cache/dinosearch/views)",
        default=None,
    )
