"""The audit report folder, written aside and swapped in whole (``core.storage.replace_dir``)::

report.md        counts, thresholds, notes (every value from the data escaped as text)
report.json      the config, counts, calibration, columns used, timings
duplicates.csv   id_a, id_b, kind (exact | near | embedding), score [, pixel_score]
leaks.csv        id_a, id_b, kind (patient | duplicate …), split_a, split_b
conflicts.csv    id_a, id_b, label_a, label_b, kind, score
agreement.csv    id, label, agreement (share of k nearest films with its label), neighbours_say
outliers.csv     id, pixel/embedding isolation and robust z, flagged
unreadable.csv   id, reason
*.png            contact sheets of clusters, leaks, conflicts, outliers
manifest.csv     with --write-manifest: one film per cluster, leaking groups in one split
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from dinosearch.audit.calibrate import Calibration
from dinosearch.audit.sheets import Row, contact_sheet
from dinosearch.core.config import to_dict
from dinosearch.core.storage import clean_leftovers, replace_dir, write_json

if TYPE_CHECKING:
    from dinosearch.audit.config import AuditConfig


@dataclass
class AuditResult:
    """What the audit found (row-aligned tables keyed by film ids) and how."""

    out: Path
    counts: dict[str, int]
    calibration: dict[str, Calibration]
    columns: dict[str, str | None]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


_PUNCT = re.compile(
    r"([!-/:-@\[-`{-~])"
)  # every ASCII punctuation mark: CommonMark escapes them all
_FORMULA = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet would run a cell starting so


def md_text(value: object) -> str:
    """``value`` as inert Markdown text: punctuation backslash-escaped, one line."""
    return _PUNCT.sub(r"\\\1", " ".join(str(value).split()))


def _csv_safe(table: pd.DataFrame) -> pd.DataFrame:
    """Text cells starting like a spreadsheet formula get a leading apostrophe."""
    out = table.drop(columns=[c for c in ("a", "b", "row") if c in table.columns])
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col].dtype):
            out[col] = [
                f"'{v}" if isinstance(v, str) and v.startswith(_FORMULA) else v for v in out[col]
            ]
    return out


def _caption(meta: pd.DataFrame, row: int, extra: str | None) -> tuple[str, str]:
    path = str(meta["path"].iat[row])
    second = "" if extra is None else str(meta[extra].iat[row])
    return path, f"{meta['id'].iat[row]}\n{second}"


def _sheets(
    result: AuditResult, meta: pd.DataFrame, labels: np.ndarray, rows: int, folder: Path
) -> list[str]:
    """Draw the four contact sheets; → the file names written."""
    label, split = result.columns["label"], result.columns["split"]
    sizes = np.bincount(labels)
    big = [c for c in np.argsort(-sizes, kind="stable") if sizes[c] > 1][:rows]
    sheets: dict[str, list[Row]] = {
        "clusters.png": [
            (f"cluster of {sizes[c]}", [_caption(meta, int(r), label) for r in np.flatnonzero(labels == c)])
            for c in big
        ],
        "leaks.png": [
            (f"{k}: {sa} / {sb}", [_caption(meta, a, split), _caption(meta, b, split)])
            for k, sa, sb, a, b in result.tables["leaks"][["kind", "split_a", "split_b", "a", "b"]].head(rows).itertuples(index=False)
        ],
        "conflicts.png": [
            (f"{k} {s:.4f}: {la} / {lb}", [_caption(meta, a, label), _caption(meta, b, label)])
            for k, s, la, lb, a, b in result.tables["conflicts"]
            .sort_values("score", ascending=False)[["kind", "score", "label_a", "label_b", "a", "b"]]
            .head(rows).itertuples(index=False)
        ],
        "outliers.png": [
            (f"outliers {i + 1}-{i + 8} (most isolated first)", [_caption(meta, r, label) for r in chunk])
            for i, chunk in _octets(result.tables["outliers"].query("flagged")["row"].head(rows * 8).tolist())
        ],
    }  # fmt: skip
    return [name for name, content in sheets.items() if contact_sheet(content, folder / name)]


def _octets(rows: list[int]) -> list[tuple[int, list[int]]]:
    return [(i, rows[i : i + 8]) for i in range(0, len(rows), 8)]


def _markdown(result: AuditResult, sheets: list[str]) -> str:
    lines = [
        "# Audit",
        "",
        f"Index: {md_text(result.info.get('index'))}",
        "",
        "| finding | count |",
        "| --- | ---: |",
    ]
    lines += [f"| {md_text(k.replace('_', ' '))} | {v} |" for k, v in result.counts.items()]
    lines += ["", "## Thresholds (calibrated on planted copies)", ""]
    for name, cal in result.calibration.items():
        t = "not set" if cal.threshold is None else f"{cal.threshold:.4f}"
        how = "given" if cal.given else "calibrated"
        rec = cal.recall()
        lines.append(
            f"- {name}: {t} ({how}); planted recall {'n/a' if rec is None else f'{rec:.3f}'}; "
            f"share of films whose nearest other film is above it: {cal.distinct_above}; "
            "lowest copy score by edit: "
            + ", ".join(f"{edit} {score:.4f}" for edit, score in cal.by_edit().items())
        )
    if result.info.get("random_init"):
        lines += ["", "The backbone is randomly initialised: embedding scores are untrained."]
    if result.notes:
        lines += ["", "## Notes", ""] + [f"- {md_text(n)}" for n in result.notes]
    lines += ["", "## Files", ""] + [f"- {md_text(s)}" for s in sheets]
    return "\n".join(lines) + "\n"


def write_report(
    result: AuditResult, config: AuditConfig, meta: pd.DataFrame, labels: np.ndarray,
    manifest: tuple[pd.DataFrame, int, int] | None,
) -> None:  # fmt: skip
    """Write every file into ``.OUT.tmp-PID`` then swap it in as ``config.out``."""
    target = Path(config.out).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(target)
    staged = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir()
    for name, table in result.tables.items():
        _csv_safe(table).to_csv(staged / f"{name}.csv", index=False)
    if manifest is not None:
        table, dropped, moved = manifest
        _csv_safe(table).to_csv(staged / "manifest.csv", index=False)
        result.counts.update(manifest_dropped=dropped, manifest_moved=moved)
    result.info["index"] = config.index
    sheets = _sheets(result, meta, labels, config.sheet_rows, staged)
    (staged / "report.md").write_text(_markdown(result, sheets))
    write_json(staged / "report.json", {
        "kind": "audit", "config": to_dict(config), "counts": result.counts, "columns": result.columns,
        "calibration": {k: c.summary() for k, c in result.calibration.items()},
        "notes": result.notes, "info": result.info, "sheets": sheets,
    })  # fmt: skip
    replace_dir(staged, target)
