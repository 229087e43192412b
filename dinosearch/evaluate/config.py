"""``dinosearch eval``'s settings and the evaluation defaults every caller shares (stdlib only)."""

from __future__ import annotations

from dataclasses import dataclass

from dinosearch.core.config import like, opt

KS: tuple[int, ...] = (1, 5, 10, 20)  # precision/recall cut-offs
N_BOOT = 1000  # bootstrap resamples: CIs of ±0.01 at 600 queries in a few seconds
_E = "evaluation"


def check_ks(ks: tuple[int, ...]) -> tuple[int, ...]:
    """Sorted unique positive cut-offs, or a ValueError naming the flag."""
    try:
        out = tuple(sorted({int(k) for k in ks}))
    except (TypeError, ValueError) as e:
        raise ValueError(f"--k {ks!r}: expected comma-separated integers such as 1,5,10,20") from e
    if not out or out[0] < 1:
        raise ValueError(f"--k {','.join(map(str, ks))}: cut-offs must be positive integers")
    return out


@dataclass(frozen=True)
class EvalSettings:
    """How a raw and an adapted index are compared (shared by ``eval`` and ``demo``)."""

    label_column: str | None = opt("metadata column of labels ('a|b' = multi)", default=None, group=_E)  # fmt: skip
    group_column: str | None = opt("items sharing this value with the query are excluded (default: patient_id when present; '' to disable)", default=None, group=_E)  # fmt: skip
    stratify_column: str | None = opt("per-stratum table and within-stratum protocol (default: source_repo when present; '' to disable)", default=None, group=_E)  # fmt: skip
    k: tuple[int, ...] = opt("comma-separated cut-offs", default=KS, group=_E)
    n_boot: int = opt("bootstrap resamples", default=N_BOOT, flag="--bootstrap", group=_E)

    def __post_init__(self) -> None:
        object.__setattr__(self, "k", check_ks(self.k))
        if self.n_boot < 0:
            raise ValueError(f"--bootstrap {self.n_boot}: must be ≥ 0")


@dataclass(frozen=True)
class EvalConfig(EvalSettings):
    """A/B retrieval metrics of a raw vs an adapted index of the same images."""

    label_column: str | None = like(EvalSettings, "label_column", default="label")
    raw: str = opt("raw index folder (no adapter), e.g. indexes/A", required=True)
    adapted: str = opt("adapted index folder of the same images", required=True)
    out: str | None = opt("report folder (default: reports/<raw>_vs_<adapted>)", default=None)
    queries: str | None = opt("query-set protocol: rows where COLUMN equals VALUE query the other rows (default: leave-one-out over all rows)", default=None, metavar="COLUMN=VALUE")  # fmt: skip
    seed: int = opt("bootstrap seed", default=0)
    features: str | None = opt("features folder both indexes were built from, when it moved (default: the manifest's)", default=None)  # fmt: skip
    adapter: str | None = opt("the adapted index's adapter folder, when it moved", default=None)
    whiten_dim: int | None = opt("PCA-whitening dimensions (default: all)", default=None)
