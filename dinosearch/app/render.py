"""Streamlit renderers of the app: results, maps, reports and index tables (no logic).

``page.py`` lays out the page and calls these; what they show comes from ``compare``, ``catalog``
and ``why``. Metadata (labels, views, sources, ids) is data: it goes through ``st.text`` /
``st.dataframe`` (never interpreted) or ``core.text.escape_markdown``; no server path is shown.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from dinosearch.app import catalog, compare
from dinosearch.app import why as why_view
from dinosearch.core.metrics import headline_k
from dinosearch.core.text import cut, escape_markdown, hide_paths
from dinosearch.evaluate.report import report_curve, report_table, verdicts

MESSAGE_CHARS = 400  # an error message on the page: paths hidden, Markdown escaped, cut


def message(text: Any) -> str:
    """An error or warning text for ``st.error``/``st.warning``: no server path, no markup."""
    return escape_markdown(hide_paths(text), MESSAGE_CHARS)


def show_no_index(settings: compare.AppSettings, problems: list[str]) -> None:
    st.info(
        f"No search index found in the indexes folder ({escape_markdown(settings.indexes.name)}).\n\n"
        f"Build a raw and an adapted index of your images in one command:\n\n"
        f"```\n{compare.DEMO_COMMAND}\n```\n\n"
        "then reload this page. Or point the app at another folder: "
        "`dinosearch app --indexes DIR` (or set `DINOSEARCH_INDEXES`)."
    )
    for p in problems:
        st.warning(message(f"Unreadable index {p}"))


def show_index_table(infos: list[catalog.IndexInfo], problems: list[str]) -> None:
    rows = [{"index": i.name, **i.describe()} for i in infos]
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    for p in problems:
        st.warning(message(f"Unreadable index {p}"))


def show_query(query: dict[str, Any], pair: compare.SideBySide) -> None:
    pre = pair.preprocess
    w, h = query["image"].size
    st.image(compare.model_view(query["image"], pre), width=220)
    windowed = " DICOM windowed;" if query["name"].lower().endswith((".dcm", ".dicom")) else ""
    st.caption(
        f"As the backbone sees it:{windowed} {w}×{h} px resized to {pre.resize_size} px, "
        f"centre-cropped to {pre.image_size}×{pre.image_size}."
    )


def show_agreement(agree: dict[str, float | None], k: int, took: float) -> None:
    st.subheader(f"Agreement in the top {k}")
    a, b, c = st.columns(3)
    a.metric(
        "Overlap",
        f"{agree['overlap']:.0%}",
        help=f"overlap@{k}: share of the top {k} in both lists",
    )
    raw, adapted = agree["raw_precision"], agree["adapted_precision"]
    explain = f"precision@{k}: share of the top {k} with the query's label"
    if raw is None or adapted is None:
        b.metric("Raw precision", "—", help=explain)
        c.metric("Adapted precision", "—", help=explain)
        st.caption("Precision needs the query's finding: pick a collection image or set it.")
    else:
        b.metric("Raw precision", f"{raw:.2f}", help=explain)
        delta = None if round(adapted - raw, 2) == 0 else f"{adapted - raw:+.2f}"
        c.metric("Adapted precision", f"{adapted:.2f}", delta=delta, help=explain)
    st.caption(
        f":violet-badge[in both] marks cases found by both. Search took {took * 1000:.0f} ms."
    )


def show_results(
    title: str,
    result: Any,
    shared: set[str],
    columns: list[str],
    key: str,
    show_id: bool,
    marks: str | None = None,
) -> None:
    """One column of result cards; ``marks`` (a widget-key prefix) adds similar / not similar boxes."""
    st.subheader(title)
    if len(result) == 0:
        st.info("No image passes the filters.")
        return
    if len(result) > 1 and round(float(result.scores.max()), 3) == round(
        float(result.scores.min()), 3
    ):
        st.caption(
            "Scores differ only beyond the third decimal: this backbone barely tells them apart."
        )
    per_row = 4
    with st.container(key=f"results-{key}"):
        records = result.rows.to_dict("records")
        for start in range(0, len(records), per_row):
            for cell, r in zip(st.columns(per_row), records[start : start + per_row], strict=False):
                with cell:
                    show_card(r, str(r["id"]) in shared, columns, show_id)
                    if marks is not None:
                        show_marks(f"{marks}-{int(r['rank'])}")


def show_card(r: dict[str, Any], both: bool, columns: list[str], show_id: bool) -> None:
    """One result: thumbnail, rank and score (ours: Markdown), then metadata as plain text."""
    thumb = compare.thumbnail(str(r["path"]))
    if thumb is None:
        st.warning("image file missing or unreadable")
    else:
        st.image(thumb, width="stretch")
    badge = " :violet-badge[in both]" if both else ""
    st.markdown(f"**#{int(r['rank'])}** · {float(r['score']):.3f}{badge}")
    if show_id:
        st.text(f"id: {cut(r['id'])}")
    if "label" in columns:
        st.text(cut(r["label"]))
    extra = [f"{c}: {cut(r[c])}" for c in columns if c != "label" and pd.notna(r[c])]
    if extra:
        st.text(" · ".join(extra))
    if r.get("viewer_url"):  # built from the server's template, values URL-quoted
        st.link_button("Open in the viewer", str(r["viewer_url"]))
    more = int(r.get("more_films") or 0)
    if more:
        st.caption(f"+{more} other film{'s' if more > 1 else ''} of this patient match")


def show_marks(key: str) -> None:
    """Two boxes under a card: this result is what I mean / is not (relevance feedback)."""
    st.checkbox("similar", key=f"like-{key}")
    st.checkbox("not similar", key=f"unlike-{key}")


def show_region(image: Any, box: tuple[float, float, float, float]) -> None:
    """The query film with the searched box outlined."""
    from PIL import ImageDraw

    outlined = image.convert("RGB")
    outlined.thumbnail((220, 220))
    scale = outlined.width / image.width
    ImageDraw.Draw(outlined).rectangle(
        [v * scale for v in box], outline=(255, 64, 64), width=max(2, outlined.width // 100)
    )
    st.image(outlined, width=220)
    st.caption("Searching with the outlined region only (re-embedded as a film of its own).")


def result_choice(r: dict[str, Any], show_id: bool) -> str:
    """How a result is named in a picker: its rank, and its id where the server allows it."""
    return f"#{int(r['rank'])} · {cut(r['id'])}" if show_id else f"#{int(r['rank'])}"


def show_why(
    why: why_view.WhyPanel, column: why_view.Column, result: Any, query: Any, show_id: bool
) -> None:
    """On demand: one result's map over both films, in this column's vector space."""
    if len(result) == 0:
        return
    records = result.rows.to_dict("records")
    with st.container(key=f"why-{column}", border=True):
        st.markdown(
            "**Why similar?** Pick a result to see which patches of both films make the score."
        )
        labels = ["(choose a result)", *(result_choice(r, show_id) for r in records)]
        choice = st.selectbox("Result to explain", labels, key=f"why-pick-{column}")
        matches = st.toggle("Best-match lines", key=f"why-matches-{column}")
        if choice == labels[0]:
            return
        row = records[labels.index(choice) - 1]
        try:
            view = why.view(column, query, str(row["path"]), matches=matches)
        except ValueError as e:  # a method that does not apply; the server's one-line refusal
            st.error(message(f"Cannot explain this result: {e}"))
            return
        st.image(view.image, width="stretch", caption=f"query (left) · result {choice} (right)")
        st.image(view.legend_bar, width="stretch")
        st.caption(view.caption)
        st.caption(view.legend)


def evaluation_tab(pair: catalog.Comparison, settings: compare.AppSettings) -> None:
    report = catalog.find_report(pair, settings.reports)
    if report is None:
        folder = (settings.indexes.name or "indexes").replace("`", "")
        st.info(
            "No evaluation report for this pair yet. Make one (labels needed):\n\n```\n"
            f"dinosearch eval --raw {folder}/{pair.raw.name.replace('`', '')} "
            f"--adapted {folder}/{pair.adapted.name.replace('`', '')} "
            f"--label-column label --group-column patient_id\n```"
        )
        return
    meta, result = report.meta, report.result
    names = (
        f"{escape_markdown(meta.get('raw_name'))} vs {escape_markdown(meta.get('adapted_name'))}"
    )
    st.subheader(f"Evaluation: {names}")
    if meta.get("random_init"):
        st.warning("Made with a randomly initialised (untrained) backbone: it tests the pipeline.")
    if report.stale:
        st.warning("An index was rebuilt since this report; re-run `dinosearch eval` to update it.")
    st.caption(
        f"{escape_markdown(result['protocol'])}, {int(result['queries'])} queries, "
        f"gallery {int(result['gallery'])}; {escape_markdown(meta.get('exclusion', ''), 200)}. "
        f"95% bootstrap intervals. Made {escape_markdown(meta.get('created'))}, "
        f"report folder {escape_markdown(report.folder.name)}."
    )
    key = f"precision@{headline_k(result['ks'])}"
    st.markdown("\n".join(f"- {line}" for line in verdicts(result["overall"], key)))
    st.dataframe(report_table(result))
    st.line_chart(report_curve(result), x_label="k", y_label="precision@k")
    if report.plot:
        st.image(str(report.plot), caption="report.png")
