"""The app's refine controls: filters on every shown column (and SQL), one case per patient,
diversity, a region of the query film, and similar / not similar marks (relevance feedback).

Widgets and session state only; the search itself is ``compare.SideBySide.query``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import streamlit as st
from PIL import Image

from dinosearch.app import compare
from dinosearch.core.text import cut

SIDES = ("raw", "adapted")
SQL_HELP = (
    "An SQL condition on the shown columns, applied before ranking, e.g. "
    "label = 'normal' AND view IN ('PA','AP'). One expression; no ';', no subqueries."
)


@dataclass(frozen=True)
class Refine:
    """What the sidebar asks of every search."""

    filters: list[Any] = field(default_factory=list)  # mappings and SQL texts, all must hold
    per_patient: bool = False
    diversity: float | None = None  # MMR λ; None: plain ranking


def sidebar_filters(metadata: pd.DataFrame, columns: list[str]) -> list[Any]:
    """Filter controls for every shown column: values to pick, numeric ranges, an SQL box."""
    picked: dict[str, list[Any]] = {}
    sql: list[str] = []
    options = compare.filter_options(metadata, columns)
    ranges = compare.range_options(metadata, columns)
    with st.sidebar.expander("Filter results"):
        for column, values in options.items():
            chosen = st.multiselect(column, values, key=f"filter-{column}", format_func=cut)
            if chosen:
                picked[column] = chosen
        for column, (low, high) in ranges.items():
            lo, hi = st.slider(column, low, high, (low, high), key=f"range-{column}")
            if (lo, hi) != (low, high):
                sql.append(compare.range_filter(column, lo, hi))
        text = st.text_input("SQL filter", key="filter-sql", help=SQL_HELP).strip()
        if text:
            from dinosearch.search.where import check_where

            check_where(text, columns, source="the shown columns")  # hidden columns: refused
            sql.append(text)
    return ([picked] if picked else []) + sql


def sidebar_refine(metadata: pd.DataFrame, columns: list[str]) -> Refine:
    filters = sidebar_filters(metadata, columns)
    st.sidebar.header("Refine")
    per_patient = "patient_id" in metadata.columns and st.sidebar.toggle(
        "One case per patient",
        value=True,
        key="per-patient",
        help="Each patient's best film, with how many of their other films match.",
    )
    spread = st.sidebar.slider(
        "Diversity",
        0.0,
        0.9,
        0.0,
        step=0.1,
        key="diversity",
        help="0: plain ranking. Higher: results less like each other (MMR, λ = 1 − diversity).",
    )
    return Refine(filters, bool(per_patient), None if spread == 0 else 1.0 - spread)


def region_input(image: Image.Image) -> tuple[float, float, float, float] | None:
    """A box of the query film (in its pixels) from two range sliders, or None for the whole film."""
    if not st.checkbox("Search a region of the film", key="region-on"):
        return None
    x = st.slider("Region: left → right (% of width)", 0, 100, (0, 50), key="region-x")
    y = st.slider("Region: top → bottom (% of height)", 0, 100, (0, 100), key="region-y")
    if x[1] - x[0] < 5 or y[1] - y[0] < 5:
        st.warning("The region is under 5% wide or high: widen it; searching the whole film.")
        return None
    w, h = image.size
    return (x[0] * w / 100, y[0] * h / 100, x[1] * w / 100, y[1] * h / 100)


# ---- relevance feedback: marks under the cards, applied by a button ----


def marks_key(side: str) -> str:
    """The widget-key prefix of this round's boxes on ``side``'s cards."""
    return f"{side}-{st.session_state.get('fb-round', 0)}"


def feedback_for(query_name: str) -> dict[str, tuple[list[str], list[str]]] | None:
    """The marks applied so far to this query: side → (similar ids, not similar ids)."""
    fb = st.session_state.get("feedback")
    return None if not fb or fb.get("query") != query_name else {s: fb[s] for s in SIDES}


def remember_shown(query_name: str, result: compare.SideBySideResult) -> None:
    """The ids behind this round's boxes (the boxes are keyed by rank, never by id)."""
    st.session_state["fb-shown"] = {
        "query": query_name,
        "raw": [str(i) for i in result.raw.rows["id"]],
        "adapted": [str(i) for i in result.adapted.rows["id"]],
    }


def apply_marks() -> None:
    """Button callback: add the ticked boxes to the query's marks, start a fresh round of boxes."""
    shown = st.session_state.get("fb-shown") or {}
    fb = st.session_state.get("feedback") or {}
    if fb.get("query") != shown.get("query"):
        fb = {"query": shown.get("query"), **{s: ([], []) for s in SIDES}}
    for side in SIDES:
        like, unlike = list(fb[side][0]), list(fb[side][1])
        for rank, id_ in enumerate(shown.get(side, []), start=1):
            if st.session_state.get(f"like-{marks_key(side)}-{rank}"):
                like.append(id_)
            if st.session_state.get(f"unlike-{marks_key(side)}-{rank}"):
                unlike.append(id_)
        fb[side] = (like, unlike)
    st.session_state["feedback"] = fb
    st.session_state["fb-round"] = st.session_state.get("fb-round", 0) + 1


def clear_marks() -> None:
    st.session_state.pop("feedback", None)
    st.session_state["fb-round"] = st.session_state.get("fb-round", 0) + 1


def feedback_buttons(marks: dict[str, tuple[list[str], list[str]]] | None) -> None:
    a, b, c = st.columns([2, 1, 3])
    a.button("Search again with my marks", key="fb-apply", on_click=apply_marks)
    b.button("Clear marks", key="fb-clear", on_click=clear_marks, disabled=marks is None)
    if marks:
        counts = ", ".join(f"{s}: {len(m[0])} similar, {len(m[1])} not" for s, m in marks.items())
        c.caption(f"Query moved by your marks (Rocchio α=1, β=0.75, γ=0.25) · {counts}")
