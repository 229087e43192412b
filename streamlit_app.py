"""dinosearch app: query by chest X-ray, raw and adapted results side by side (UI only; logic in dinosearch/).

Run: ``streamlit run streamlit_app.py [-- --indexes DIR --reports DIR --show-columns a,b]``.
Local only, no patient columns unless --show-columns lists them: see docs/reliability.md.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd
import streamlit as st

from dinosearch.app import catalog
from dinosearch.app import compare as app
from dinosearch.app import why as why_view
from dinosearch.core.metrics import headline_k
from dinosearch.evaluate.report import report_curve, report_table, verdicts
from dinosearch.inputs.images import ImageReadError, read_image


@dataclass(frozen=True)
class Options:
    k: int
    columns: list[str]
    filters: dict[str, list[Any]]


@st.cache_resource(show_spinner="Loading the backbone and both indexes …", max_entries=4)
def load_pair(raw: str, adapted: str, fingerprints: tuple[str, str]) -> app.SideBySide:
    """One backbone and two indexes per pair; a rebuild with another backbone makes a new entry."""
    return app.SideBySide(raw, adapted)


@st.cache_resource(max_entries=4)
def load_why(raw: str, adapted: str, fingerprints: tuple[str, str]) -> why_view.WhySimilar:
    """The "why similar" explainer of the same pair (its maps memoised across reruns)."""
    return why_view.WhySimilar(load_pair(raw, adapted, fingerprints))


# ---- sidebar: plain values out ----


def sidebar_pair(infos: list[catalog.IndexInfo]) -> tuple[catalog.Comparison | None, str | None]:
    """The chosen (raw, adapted) pair, or None and why not."""
    st.sidebar.header("Indexes")
    pairs = catalog.find_comparisons(infos)
    manual = st.sidebar.toggle("Choose the two indexes myself", value=not pairs and len(infos) > 1)
    if manual:
        names = [i.name for i in infos]
        raw = infos[names.index(st.sidebar.selectbox("Raw index", names))]
        second = min(1, len(names) - 1)
        adapted = infos[names.index(st.sidebar.selectbox("Adapted index", names, index=second))]
        problem = catalog.comparison_problem(raw, adapted)
        return (None, problem) if problem else (catalog.Comparison(raw, adapted), None)
    if not pairs:
        return None, (
            "no raw + adapted pair of the same images and backbone was found. Build the adapted "
            "index with `dinosearch index --features F --adapter A --out indexes/NAME`, or run "
            f"`{app.DEMO_COMMAND}`"
        )
    pair = st.sidebar.selectbox("Index pair (raw ↔ adapted)", pairs, format_func=lambda p: p.label)
    return pair, None


def sidebar_describe(pair: catalog.Comparison) -> None:
    for title, info in (("Raw", pair.raw), ("Adapted", pair.adapted)):
        rows = info.describe()
        lines = "\n".join(f"- **{k}**: {v}" for k, v in rows.items())
        st.sidebar.markdown(f"**{title}** · `{info.name}`\n{lines}")


def sidebar_options(metadata: pd.DataFrame, settings: app.AppSettings) -> Options:
    st.sidebar.header("Results")
    k = st.sidebar.slider(
        "Results per column (k)", 1, min(50, len(metadata)), min(8, len(metadata))
    )
    allowed = app.display_columns(list(metadata.columns), settings.show_columns)
    columns = st.sidebar.multiselect(
        "Metadata shown",
        allowed,
        default=allowed,
        help="Others (patient identifiers…) only where the server allows them (--show-columns).",
    )
    filters = {}
    options = app.filter_options(metadata, columns)
    if options:
        with st.sidebar.expander("Filter results"):
            for column, values in options.items():
                picked = st.multiselect(column, values, key=f"filter-{column}")
                if picked:
                    filters[column] = picked
    return Options(k, columns, filters)


# ---- main area ----


def show_no_index(settings: app.AppSettings, problems: list[str]) -> None:
    st.info(
        f"No search index found in `{settings.indexes.resolve()}`.\n\n"
        f"Build a raw and an adapted index of your images in one command:\n\n"
        f"```\n{app.DEMO_COMMAND}\n```\n\n"
        "then reload this page. Or point the app at another folder: "
        "`streamlit run streamlit_app.py -- --indexes DIR` (or set `DINOSEARCH_INDEXES`)."
    )
    for p in problems:
        st.warning(f"Unreadable index {p}")


def show_index_table(infos: list[catalog.IndexInfo], problems: list[str]) -> None:
    rows = [{"index": i.name, **i.describe()} for i in infos]
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    for p in problems:
        st.warning(f"Unreadable index {p}")


def query_input(pair: app.SideBySide, metadata: pd.DataFrame) -> dict[str, Any] | None:
    """The query chosen on the page: image, name, known label, group exclusion; None if none yet."""
    source = st.radio("Query", ["Upload a film", "Pick from the collection"], horizontal=True)
    if source == "Upload a film":
        upload = st.file_uploader(  # no type=: Streamlit would answer a .exe with a traceback
            "Chest film: PNG, JPEG, 16-bit PNG or DICOM (.dcm)",
            max_upload_size=app.MAX_UPLOAD_MB,
        )
        labels = sorted(metadata["label"].dropna().unique().tolist(), key=str)
        known = st.selectbox("Known finding (optional, for precision)", ["(unknown)", *labels])
        if upload is None:
            return None
        image = app.read_query(upload.getvalue(), upload.name)
        label = None if known == "(unknown)" else known
        return {"image": image, "name": upload.name, "label": label, "exclude": None}
    row = st.selectbox(
        "Image from the indexed collection",
        range(len(metadata)),
        format_func=lambda i: f"{metadata['id'].iat[i]} · {metadata['label'].iat[i]}",
    )
    group = "patient_id" if "patient_id" in metadata.columns else "id"
    exclude = st.checkbox(
        f"Exclude images with the same {group} (as in evaluation)",
        value=True,
        help="Otherwise the image itself and the patient's other films come first.",
    )
    record = metadata.iloc[int(row)]
    image = read_image(str(record["path"]))
    return {
        "image": image,
        "name": str(record["id"]),
        "label": record["label"],
        "exclude": (group, record[group]) if exclude else None,
    }


def show_query(query: dict[str, Any], pair: app.SideBySide) -> None:
    pre = pair.preprocess
    w, h = query["image"].size
    st.image(app.model_view(query["image"], pre), width=220)
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


def show_results(title: str, result: Any, shared: set[str], columns: list[str], key: str) -> None:
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
                    show_card(r, str(r["id"]) in shared, columns)


def show_card(r: dict[str, Any], both: bool, columns: list[str]) -> None:
    thumb = app.thumbnail(str(r["path"]))
    if thumb is None:
        st.warning("image file missing")
    else:
        st.image(thumb, width="stretch")
    badge = " :violet-badge[in both]" if both else ""
    st.markdown(f"**#{r['rank']}** · {r['score']:.3f} · `{r['id']}`{badge}")
    if "label" in columns:
        st.markdown(f"**{r['label']}**")
    extra = [f"{c}: {r[c]}" for c in columns if c != "label" and pd.notna(r[c])]
    if extra:
        st.caption(" · ".join(extra))


def search_tab(pair: app.SideBySide, info: catalog.Comparison, options: Options) -> None:
    top = st.columns([3, 2, 4], gap="large")
    with top[0]:
        try:
            query = query_input(pair, pair.raw.metadata)
        except ImageReadError as e:
            st.error(f"Could not read {e.path}: {e.reason}. Use a PNG, JPEG or DICOM chest film.")
            return
    if query is None:
        st.info("Upload a chest film or pick one from the collection to search.")
        return
    with top[1]:
        show_query(query, pair)
    start = time.perf_counter()
    result = pair.query(
        query["image"], options.k, filters=options.filters or None, exclude_group=query["exclude"]
    )
    took = time.perf_counter() - start
    with top[2]:
        show_agreement(app.agreement(result, query["label"], options.k), options.k, took)
    st.divider()
    shared = result.shared_ids()
    fingerprints = (info.raw.backbone["fingerprint"], info.adapted.backbone["fingerprint"])
    why = load_why(str(info.raw.path), str(info.adapted.path), fingerprints)
    left, right = st.columns(2, gap="large")
    with left:
        show_results("Raw backbone", result.raw, shared, options.columns, "raw")
        show_why(why, "raw", result.raw, query["image"])
    with right:
        title = f"Adapted (adapter {info.adapted.adapter})"
        show_results(title, result.adapted, shared, options.columns, "adapted")
        show_why(why, "adapted", result.adapted, query["image"])


def show_why(why: why_view.WhySimilar, column: why_view.Column, result: Any, query: Any) -> None:
    """On demand: one result's map over both films, in this column's vector space."""
    if len(result) == 0:
        return
    records = result.rows.to_dict("records")
    with st.container(key=f"why-{column}", border=True):
        st.markdown(
            "**Why similar?** Pick a result to see which patches of both films make the score."
        )
        labels = ["(choose a result)", *(f"#{r['rank']} · {r['id']}" for r in records)]
        choice = st.selectbox("Result to explain", labels, key=f"why-pick-{column}")
        matches = st.toggle("Best-match lines", key=f"why-matches-{column}")
        if choice == labels[0]:
            return
        row = records[labels.index(choice) - 1]
        view = why.view(column, query, str(row["path"]), matches=matches)
        st.image(view.image, width="stretch", caption=f"query (left) · result {choice} (right)")
        st.image(view.legend_bar, width="stretch")
        st.caption(view.caption)
        st.caption(view.legend)


def evaluation_tab(pair: catalog.Comparison, settings: app.AppSettings) -> None:
    report = catalog.find_report(pair, settings.reports)
    if report is None:
        st.info(
            "No evaluation report for this pair yet. Make one (labels needed):\n\n```\n"
            f"dinosearch eval --raw {pair.raw.path} --adapted {pair.adapted.path} "
            f"--label-column label --group-column patient_id\n```"
        )
        return
    meta, result = report.meta, report.result
    st.subheader(f"Evaluation: {meta.get('raw_name')} vs {meta.get('adapted_name')}")
    if meta.get("random_init"):
        st.warning("Made with a randomly initialised (untrained) backbone: it tests the pipeline.")
    if report.stale:
        st.warning("An index was rebuilt since this report; re-run `dinosearch eval` to update it.")
    st.caption(
        f"{result['protocol']}, {result['queries']} queries, gallery {result['gallery']}; "
        f"{meta.get('exclusion', '')}. 95% bootstrap intervals. Made {meta.get('created')}, "
        f"`{report.folder}`."
    )
    key = f"precision@{headline_k(result['ks'])}"
    st.markdown("\n".join(f"- {line}" for line in verdicts(result["overall"], key)))
    st.dataframe(report_table(result))
    st.line_chart(report_curve(result), x_label="k", y_label="precision@k")
    if report.plot:
        st.image(str(report.plot), caption="report.png")


def run(settings: app.AppSettings) -> None:
    infos, problems = catalog.discover_indexes(settings.indexes)
    if not infos:
        show_no_index(settings, problems)
        return
    chosen, why_not = sidebar_pair(infos)
    if chosen is None:
        st.error(f"Cannot compare: {why_not}.")
        show_index_table(infos, problems)
        return
    sidebar_describe(chosen)
    fingerprints = (chosen.raw.backbone["fingerprint"], chosen.adapted.backbone["fingerprint"])
    pair = load_pair(str(chosen.raw.path), str(chosen.adapted.path), fingerprints)
    pair.refresh()
    if chosen.raw.random_init:
        st.warning(
            f"**The backbone ({chosen.raw.backbone.get('name')}) is randomly initialised — "
            "untrained.** These results only exercise the pipeline; they say nothing clinical."
        )
    options = sidebar_options(pair.raw.metadata, settings)
    search, evaluation, indexes = st.tabs(["Search", "Evaluation", "Indexes"])
    with search:
        search_tab(pair, chosen, options)
    with evaluation:
        evaluation_tab(chosen, settings)
    with indexes:
        show_index_table(infos, problems)


def main() -> None:
    st.set_page_config(page_title="dinosearch · chest X-ray search", page_icon="🩻", layout="wide")
    st.title("Chest X-ray similarity search")
    st.caption("The most similar indexed films by the raw DINOv2 backbone and by the adapted one.")
    settings = app.parse_settings(sys.argv[1:], os.environ)
    try:
        run(settings)
    except (ValueError, FileNotFoundError) as e:
        st.error(f"{e}")
    except Exception as e:  # a clinician never sees a traceback
        st.error(f"Something went wrong ({type(e).__name__}: {e}). Please report this message.")


if __name__ == "__main__":
    main()
