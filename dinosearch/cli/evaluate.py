"""``dinosearch eval``: A/B retrieval metrics of a raw vs an adapted index of the same images."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DEFAULT_GROUP = "patient_id"  # used when present, unless --group-column '' says otherwise
DEFAULT_STRATIFY = "source_repo"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--raw", required=True, help="raw index folder (no adapter), e.g. indexes/A")
    p.add_argument("--adapted", required=True, help="adapted index folder of the same images")
    p.add_argument(
        "--label-column", default="label", help="metadata column of labels ('a|b' = multi)"
    )
    p.add_argument(
        "--group-column",
        default=None,
        help=f"items sharing this value with the query are excluded (default: "
        f"{DEFAULT_GROUP} when present; '' to disable)",
    )
    p.add_argument(
        "--stratify-column",
        default=None,
        help=f"per-stratum table and within-stratum protocol (default: {DEFAULT_STRATIFY} "
        "when present; '' to disable)",
    )
    p.add_argument("--k", default="1,5,10,20", help="comma-separated cut-offs")
    p.add_argument(
        "--out", default=None, help="report folder (default: reports/<raw>_vs_<adapted>)"
    )
    p.add_argument(
        "--queries",
        default=None,
        metavar="COLUMN=VALUE",
        help="query-set protocol: rows where COLUMN equals VALUE query the other rows "
        "(default: leave-one-out over all rows)",
    )
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument(
        "--whiten-dim", type=int, default=None, help="PCA-whitening dimensions (default: all)"
    )


def parse_ks(text: str) -> list[int]:
    try:
        ks = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError as e:
        raise ValueError(
            f"--k {text!r}: expected comma-separated integers such as 1,5,10,20"
        ) from e
    if not ks or ks[0] < 1:
        raise ValueError(f"--k {text!r}: cut-offs must be positive integers")
    return ks


def resolve_column(metadata: pd.DataFrame, asked: str | None, default: str) -> str | None:
    """``asked`` (must exist), '' → None, None → ``default`` when present."""
    if asked == "":
        return None
    if asked is None:
        return default if default in metadata.columns else None
    if asked not in metadata.columns:
        raise ValueError(
            f"column {asked!r} is not in the index metadata; columns: {list(metadata.columns)}"
        )
    return asked


def run(args: argparse.Namespace) -> int:
    out = (
        args.out
        or Path("reports")
        / f"{Path(args.raw).resolve().name}_vs_{Path(args.adapted).resolve().name}"
    )
    _, _, text = evaluate_indexes(
        args.raw,
        args.adapted,
        out,
        label_column=args.label_column,
        group_column=args.group_column,
        stratify_column=args.stratify_column,
        ks=parse_ks(args.k),
        queries=args.queries,
        n_boot=args.bootstrap,
        seed=args.seed,
        whiten_dim=args.whiten_dim,
    )
    print(text)
    return 0


def evaluate_indexes(
    raw_dir: str | Path,
    adapted_dir: str | Path,
    out: str | Path,
    *,
    label_column: str = "label",
    group_column: str | None = None,
    stratify_column: str | None = None,
    ks: list[int] | None = None,
    queries: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    whiten_dim: int | None = None,
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Open both indexes, evaluate, write the report; → (result, meta, summary text)."""
    from dinosearch.core.runtime import package_version
    from dinosearch.evaluate.ab import evaluate
    from dinosearch.evaluate.report import summary, write_report
    from dinosearch.index import open_index

    raw, adapted = open_index(raw_dir), open_index(adapted_dir)
    _check_pair(raw, adapted)
    md = raw.metadata
    adapted_vectors = _aligned(adapted.vectors(), adapted.metadata, md, adapted.path)
    raw_features, feature_source = _raw_features(raw)
    label = resolve_column(md, label_column, "label")
    if label is None:
        raise ValueError(
            f"--label-column {label_column!r} is required; columns: {list(md.columns)}"
        )
    group = resolve_column(md, group_column, DEFAULT_GROUP)
    stratum = resolve_column(md, stratify_column, DEFAULT_STRATIFY)
    result = evaluate(
        raw_features,
        adapted_vectors,
        md[label].tolist(),
        ids=md["id"].astype(str).to_numpy(),
        groups=None if group is None else md[group].to_numpy(dtype=object),
        strata=None if stratum is None else md[stratum].to_numpy(dtype=object),
        query_mask=_query_mask(md, queries),
        ks=ks or [1, 5, 10, 20],
        n_boot=n_boot,
        seed=seed,
        whiten_dim=whiten_dim,
    )
    result["stratify_column"] = stratum
    backbone = raw.manifest["backbone"]
    meta = {
        "raw_name": Path(raw.path).resolve().name,
        "adapted_name": Path(adapted.path).resolve().name,
        "raw_index": {
            "path": str(Path(raw.path).resolve()),
            "version": raw.version,
            "vectors_fingerprint": raw.fingerprint,
        },
        "adapted_index": {
            "path": str(Path(adapted.path).resolve()),
            "version": adapted.version,
            "vectors_fingerprint": adapted.fingerprint,
        },
        "backbone": {k: backbone.get(k) for k in ("name", "fingerprint", "random_init")},
        "random_init": bool(backbone.get("random_init")),
        "adapter": adapted.manifest.get("adapter"),
        "columns": {"label": label, "group": group, "stratify": stratum, "queries": queries},
        "exclusion": "the query itself"
        + (f" and every item with the same {group}" if group else "")
        + " are excluded from its results",
        "resample_unit": f"{group} groups of queries" if group else "queries",
        "whitening": {
            "fitted_on": "gallery raw features",
            "source": feature_source,
            "dim": whiten_dim,
            "shrinkage": 0.1,
        },
        "bootstrap": {"resamples": n_boot, "seed": seed, "level": 0.95},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dinosearch_version": package_version(),
    }
    folder = write_report(result, meta, out)
    return (
        result,
        meta,
        summary(result, meta) + f"\nfull report: {folder}/report.md, plot: {folder}/report.png",
    )


def _check_pair(raw: Any, adapted: Any) -> None:
    if raw.manifest.get("adapter"):
        raise ValueError(
            f"--raw {raw.path} was built with an adapter; give the index built without one"
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


def _aligned(
    vectors: np.ndarray, metadata: pd.DataFrame, reference: pd.DataFrame, path: Any
) -> np.ndarray:
    """Rows of ``vectors`` reordered to ``reference``'s ids; refuse different image sets."""
    ids, ref = metadata["id"].astype(str), reference["id"].astype(str)
    if len(ids) == len(ref) and (ids.to_numpy() == ref.to_numpy()).all():
        return vectors
    pos = pd.Series(np.arange(len(ids)), index=ids).reindex(ref)
    if len(ids) != len(ref) or pos.isna().any():
        raise ValueError(
            f"{path} indexes other images than the raw index ({len(ids)} vs {len(ref)} rows); "
            "build both indexes from the same features folder"
        )
    return vectors[pos.to_numpy(dtype=np.int64)]


def _raw_features(raw: Any) -> tuple[np.ndarray, str]:
    """The raw index's backbone features (for whitening), else its unit vectors."""
    from dinosearch.features.folder import load_features

    src = raw.manifest.get("features") or {}
    try:
        fs = load_features(src["path"])
        return _aligned(
            np.asarray(fs.features, dtype=np.float32), fs.metadata, raw.metadata, src["path"]
        ), f"features folder {src['path']}"
    except (KeyError, FileNotFoundError, ValueError):
        return raw.vectors(), "raw index vectors (features folder unavailable)"


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
