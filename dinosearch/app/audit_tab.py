"""The app's "Audit" tab: browse a report folder written by `dinosearch audit`.

Everything shown comes from files: numbers as metrics, tables as dataframes, notes as plain text,
contact sheets as images; nothing from the data is rendered as Markdown or HTML.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import streamlit as st

TABLES = {
    "Duplicates": ("duplicates.csv", "clusters.png"),
    "Leaks between splits": ("leaks.csv", "leaks.png"),
    "Label conflicts": ("conflicts.csv", "conflicts.png"),
    "Neighbours disagree": ("agreement.csv", None),
    "Outliers": ("outliers.csv", "outliers.png"),
    "Unreadable": ("unreadable.csv", None),
}
MAX_ROWS = 5000  # rows shown per table; the CSV holds them all


def find_audit_reports(roots: Iterable[Path], limit: int = 200) -> list[Path]:
    """Folders under ``roots`` holding a report.json of kind "audit" (at most ``limit``)."""
    found: list[Path] = []
    for root in roots:
        for path in sorted(Path(root).glob("**/report.json")) if Path(root).is_dir() else []:
            if len(found) >= limit:
                return found
            try:
                if json.loads(path.read_text()).get("kind") == "audit":
                    found.append(path.parent)
            except (OSError, ValueError, AttributeError):
                continue
    return found


def render_audit(report_dir: Path) -> None:
    """Counts, thresholds, notes, then one finding table and its contact sheet at a time."""
    try:
        report = json.loads((report_dir / "report.json").read_text())
    except (OSError, ValueError) as e:
        st.error(f"{report_dir}/report.json is unreadable ({e}); rerun `dinosearch audit`.")
        return
    counts = report.get("counts", {})
    shown = [k for k in counts if k not in ("films_in_clusters",)][:12]
    for row in range(0, len(shown), 6):
        for col, key in zip(st.columns(6), shown[row : row + 6], strict=False):
            col.metric(str(key).replace("_", " "), str(counts[key]))
    for name, cal in report.get("calibration", {}).items():
        st.text(
            f"{name} threshold {cal.get('threshold')} ({'given' if cal.get('given') else 'calibrated'}), "
            f"planted-copy recall {cal.get('planted_recall')}"
        )
    for note in report.get("notes", []):
        st.text(f"note: {note}")
    choice = st.radio("Finding", list(TABLES), horizontal=True, key=f"audit-{report_dir}")
    table, sheet = TABLES[str(choice)]
    if (report_dir / table).is_file():
        frame = pd.read_csv(report_dir / table, nrows=MAX_ROWS, dtype=str, keep_default_na=False)
        st.dataframe(frame, hide_index=True)
    if sheet is not None and (report_dir / sheet).is_file():
        st.image(str(report_dir / sheet), caption=sheet)


def render_audit_choice(roots: Iterable[Path]) -> None:
    """Pick one of the audit reports found under ``roots`` and render it."""
    reports = find_audit_reports(roots)
    if not reports:
        st.info("No audit report found. Run `dinosearch audit --index INDEX --out reports/audit`.")
        return
    render_audit(st.selectbox("Audit report", reports, format_func=str))
