"""Evaluate a raw and an adapted index of the same images from what made them: features + adapter.

Both indexes name, in their manifests, the features folders they were built from and (for the
adapted one) the adapter. The evaluation reads those, not the FAISS files: compressed indexes
keep no exact vectors, and the whitening baseline needs the backbone's raw features.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dinosearch.adapt.adapter import DomainAdapter
from dinosearch.adapt.vectors import to_vectors
from dinosearch.core.columns import Role, resolve_roles
from dinosearch.core.runtime import package_version
from dinosearch.evaluate.ab import evaluate
from dinosearch.evaluate.config import KS, N_BOOT
from dinosearch.evaluate.report import summary, write_report
from dinosearch.index import IndexHandle, open_index
from dinosearch.index.handle import iter_sources


def evaluate_indexes(
    raw_dir: str | Path,
    adapted_dir: str | Path,
    out: str | Path,
    *,
    label_column: str | None = None,
    group_column: str | None = None,
    stratify_column: str | None = None,
    ks: list[int] | None = None,
    queries: str | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
    whiten_dim: int | None = None,
    features: str | Path | None = None,
    adapter: str | Path | None = None,
    config: dict[str, Any] | None = None,
) -> EvalResult:
    """Evaluate raw vs adapted on the images both indexes hold; write the report to ``out``.

    Args:
        label_column, group_column, stratify_column: ``core.columns`` roles (None: the default
            when present; '' switches a role off).
        features, adapter: folders to read instead of those the manifests name (moved folders).
        config: the job's settings (``core.config.job_record``), recorded in report.json.
    """
    raw, adapted = open_index(raw_dir), open_index(adapted_dir)
    _check_pair(raw, adapted)
    raw_features, source = _features(raw, features)
    net = _adapter(adapted, adapter)
    md = raw.metadata
    roles = resolve_roles(
        md.columns, label=label_column, group=group_column, stratify=stratify_column
    )
    label, group, stratum = roles["label"], roles["group"], roles["stratify"]
    result = evaluate(
        raw_features,
        to_vectors(raw_features, net),
        md[label].tolist(),
        ids=md["id"].astype(str).to_numpy(),
        groups=None if group is None else md[group].to_numpy(dtype=object),
        strata=None if stratum is None else md[stratum].to_numpy(dtype=object),
        query_mask=_query_mask(md, queries),
        ks=ks or list(KS),
        n_boot=n_boot,
        seed=seed,
        whiten_dim=whiten_dim,
    )
    result["stratify_column"] = stratum
    meta = _meta(raw, adapted, roles, queries, source, whiten_dim, n_boot, seed)
    folder = write_report(result, meta, out, config)
    text = summary(result, meta) + f"\nfull report: {folder}/report.md, plot: {folder}/report.png"
    return EvalResult(result, meta, text, folder)


@dataclass(frozen=True)
class EvalResult:
    """What ``evaluate_indexes`` measured and wrote."""

    metrics: dict[str, Any]  # per method: overall/per-stratum precision, recall, mAP with CIs
    meta: dict[str, Any]  # the indexes, column roles, protocol
    text: str  # the summary the terminal shows
    folder: Path  # report.json, report.md, report.png


def _check_pair(raw: IndexHandle, adapted: IndexHandle) -> None:
    if raw.manifest.get("adapter"):
        raise ValueError(
            f"--raw {raw.path} was built with an adapter; give the index built without one"
        )
    if not adapted.manifest.get("adapter"):
        raise ValueError(
            f"--adapted {adapted.path} was built without an adapter; give the adapted index"
        )
    fp_raw, fp_ad = (
        raw.manifest["backbone"]["fingerprint"],
        adapted.manifest["backbone"]["fingerprint"],
    )
    if fp_raw != fp_ad:
        raise ValueError(
            f"--raw {raw.path} uses backbone {fp_raw!r} but --adapted {adapted.path} uses "
            f"{fp_ad!r}; compare indexes of the same backbone"
        )
    if _sources(raw) != _sources(adapted):
        raise ValueError(
            f"{raw.path} and {adapted.path} were built from different features; build both "
            "indexes from the same features folder (`dinosearch index --features …`)"
        )


def _sources(handle: IndexHandle) -> list[dict[str, Any]]:
    """The features folders an index was built from, appended ones included, in row order."""
    return [handle.manifest["features"], *handle.manifest.get("appended", [])]


def _features(raw: IndexHandle, override: str | Path | None) -> tuple[np.ndarray, str]:
    """(N, D) raw backbone features in the index's row order, checked against its manifest."""
    parts = list(iter_sources(raw.manifest, override))
    ids = pd.concat([i for _, _, i in parts]).reset_index(drop=True)
    if not ids.equals(raw.metadata["id"].astype(str)):
        raise ValueError(f"{raw.path}: metadata rows do not match its features folders; rebuild it")
    features = np.concatenate([np.asarray(f, dtype=np.float32) for _, f, _ in parts])
    return features, f"features folder {', '.join(str(p) for p, _, _ in parts)}"


def _adapter(adapted: IndexHandle, override: str | Path | None) -> DomainAdapter:
    net = adapted.load_adapter(override)
    assert net is not None  # _check_pair refused an adapted index without an adapter
    return net


def _query_mask(md: pd.DataFrame, queries: str | None) -> np.ndarray | None:
    if queries is None:
        return None
    column, sep, value = queries.partition("=")
    if not sep or column not in md.columns:
        raise ValueError(
            f"--queries {queries!r}: expected COLUMN=VALUE with a metadata column; "
            f"columns: {list(md.columns)}"
        )
    mask = md[column].astype(str).to_numpy() == value
    if not mask.any() or mask.all():
        raise ValueError(
            f"--queries {queries!r} selects {int(mask.sum())} of {len(mask)} rows; "
            "it must leave both queries and a gallery"
        )
    return mask


def _meta(
    raw: IndexHandle,
    adapted: IndexHandle,
    roles: dict[Role, str | None],
    queries: str | None,
    source: str,
    whiten_dim: int | None,
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """What was compared and how: stored beside the result in report.json."""
    backbone, group = raw.manifest["backbone"], roles["group"]

    def index(h: IndexHandle) -> dict[str, Any]:
        return {
            "path": str(Path(h.path).resolve()),
            "version": h.version,
            "vectors_fingerprint": h.fingerprint,
        }

    return {
        "raw_name": Path(raw.path).resolve().name,
        "adapted_name": Path(adapted.path).resolve().name,
        "raw_index": index(raw),
        "adapted_index": index(adapted),
        "backbone": {k: backbone.get(k) for k in ("name", "fingerprint", "random_init")},
        "random_init": bool(backbone.get("random_init")),
        "adapter": adapted.manifest.get("adapter"),
        "columns": {**roles, "queries": queries},
        "exclusion": "the query itself"
        + (f" and every item with the same {group}" if group else "")
        + " are excluded from its results",
        "resample_unit": f"{group} groups of queries" if group else "queries",
        "whitening": {
            "fitted_on": "gallery raw features",
            "source": source,
            "dim": whiten_dim,
            "shrinkage": 0.1,
        },
        "bootstrap": {"resamples": n_boot, "seed": seed, "level": 0.95},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "dinosearch_version": package_version(),
    }
