"""dinosearch app: query by chest X-ray, raw and adapted results side by side (UI layout only).

Run: ``dinosearch app [--indexes DIR --reports DIR --show-columns a,b]`` (it runs
``streamlit run`` on this file). Local only; cards show label, view and source_repo unless
--show-columns allows more: see docs/reliability.md. Drawing is ``render.py``, logic ``compare.py``.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

import pandas as pd
import streamlit as st

from dinosearch.app import audit_tab, catalog, compare, map_view, render
from dinosearch.app import refine as refine_view
from dinosearch.app import why as why_view
from dinosearch.core.text import cut, escape_markdown
from dinosearch.inputs.images import ImageReadError, read_image

if TYPE_CHECKING:
    from dinosearch.app.remote import RemotePair


@dataclass(frozen=True)
class Options:
    k: int
    columns: list[str]
    show_id: bool
    refine: refine_view.Refine
    viewer_url: str | None = None  # link template (--viewer-url)
    archive: str | None = None  # query by UID from this archive (--archive)


@st.cache_resource(show_spinner="Loading the backbone and both indexes …", max_entries=4)
def load_pair(
    raw: str, adapted: str, fingerprints: tuple[str, str], api: str | None = None
) -> compare.SideBySide:
    """One backbone and two indexes per pair; a rebuild with another backbone makes a new entry.
    With ``--api URL`` no backbone: the server's model answers (app/remote.py)."""
    if api:
        from dinosearch.app.remote import RemotePair

        return RemotePair(api, raw, adapted)  # type: ignore[return-value]  # same interface
    return compare.SideBySide(raw, adapted)


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
            f"`{compare.DEMO_COMMAND}`"
        )
    pair = st.sidebar.selectbox("Index pair (raw ↔ adapted)", pairs, format_func=lambda p: p.label)
    return pair, None


def sidebar_describe(pair: catalog.Comparison) -> None:
    for title, info in (("Raw", pair.raw), ("Adapted", pair.adapted)):
        rows = info.describe()
        lines = "\n".join(f"- **{k}**: {escape_markdown(v)}" for k, v in rows.items())
        st.sidebar.markdown(f"**{title}** · {escape_markdown(info.name)}\n{lines}")


def sidebar_options(metadata: pd.DataFrame, settings: compare.AppSettings) -> Options:
    st.sidebar.header("Results")
    k = st.sidebar.slider(
        "Results per column (k)", 1, min(50, len(metadata)), min(8, len(metadata))
    )
    allowed = compare.display_columns(list(metadata.columns), settings.show_columns)
    columns = st.sidebar.multiselect(
        "Metadata shown",
        allowed,
        default=allowed,
        help="Others (patient identifiers…) only where the server allows them (--show-columns).",
    )
    return Options(
        k,
        columns,
        settings.show_id,
        refine_view.sidebar_refine(metadata, columns),
        settings.viewer_url,
        settings.archive,
    )


# ---- main area ----


def query_input(
    pair: compare.SideBySide, metadata: pd.DataFrame, show_id: bool, archive: str | None = None
) -> dict[str, Any] | None:
    """The query chosen on the page: image, name, known label, group exclusion; None if none yet."""
    map_view.take_pick(len(metadata))  # a film clicked on the Map tab becomes the query
    sources = ["Upload a film", "Pick from the collection"] + ["A film in the archive"] * bool(
        archive
    )
    source = st.radio("Query", sources, horizontal=True, key="query-source")
    if source == "A film in the archive" and archive:
        uid = st.text_input("Study or SOP Instance UID")
        if not uid:
            return None
        image = compare.read_archive_query(archive, uid)
        return {"image": image, "name": cut(uid), "label": None, "exclude": None, "row": None}
    if source == "Upload a film":
        upload = st.file_uploader(  # no type=: Streamlit would answer a .exe with a traceback
            "Chest film: PNG, JPEG, 16-bit PNG or DICOM (.dcm)",
            max_upload_size=compare.MAX_UPLOAD_MB,
        )
        labels = sorted(metadata["label"].dropna().unique().tolist(), key=str)
        known = st.selectbox(
            "Known finding (optional, for precision)", ["(unknown)", *labels], format_func=cut
        )
        if upload is None:
            return None
        image = compare.read_query(upload.getvalue(), upload.name)
        label = None if known == "(unknown)" else known
        return {"image": image, "name": upload.name, "label": label, "exclude": None, "row": None}
    row = st.selectbox(
        "Image from the indexed collection",
        range(len(metadata)),
        format_func=lambda i: collection_choice(metadata, i, show_id),
        key="query-row",
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
        "row": int(row),
    }


def collection_choice(metadata: pd.DataFrame, i: int, show_id: bool) -> str:
    """How film ``i`` of the collection is named in the picker: id only where allowed."""
    name = cut(metadata["id"].iat[i], 40) if show_id else f"film {i + 1}"
    return f"{name} · {cut(metadata['label'].iat[i], 40)}"


def ask(
    pair: compare.SideBySide,
    query: dict[str, Any],
    options: Options,
    region: tuple[float, float, float, float] | None,
    marks: dict[str, tuple[list[str], list[str]]] | None,
) -> tuple[compare.SideBySideResult, float]:
    """Both columns' results with every refinement asked for, and how long that took (s)."""
    start = time.perf_counter()
    refine = options.refine
    result = pair.query(
        query["image"],
        options.k,
        filters=refine.filters or None,
        exclude_group=query["exclude"],
        region=region,
        feedback=marks,
        collapse="patient_id" if refine.per_patient else None,
        diversity=refine.diversity,
    )
    took = time.perf_counter() - start
    refine_view.remember_shown(query["name"], result)
    map_view.remember(result, query["row"])
    for side in (result.raw, result.adapted):
        compare.add_viewer_links(side.rows, options.viewer_url)
    return result, took


def search_tab(pair: compare.SideBySide, info: catalog.Comparison, options: Options) -> None:
    top = st.columns([3, 2, 4], gap="large")
    with top[0]:
        try:
            query = query_input(pair, pair.raw.metadata, options.show_id, options.archive)
        except ImageReadError as e:
            st.error(
                render.message(f"Could not read {e.path}: {e.reason}.")
                + " Use a PNG, JPEG or DICOM chest film."
            )
            return
    if query is None:
        st.info("Upload a chest film or pick one from the collection to search.")
        return
    with top[1]:
        render.show_query(query, pair)
        region = refine_view.region_input(query["image"])
        if region is not None:
            render.show_region(query["image"], region)
    marks = refine_view.feedback_for(query["name"])
    result, took = ask(pair, query, options, region, marks)
    with top[2]:
        render.show_agreement(compare.agreement(result, query["label"], options.k), options.k, took)
    st.divider()
    refine_view.feedback_buttons(marks)
    shared = result.shared_ids()
    fingerprints = (info.raw.backbone["fingerprint"], info.adapted.backbone["fingerprint"])
    local = isinstance(pair, compare.SideBySide)  # with --api, the server explains
    why: why_view.WhyPanel = (
        load_why(str(info.raw.path), str(info.adapted.path), fingerprints)
        if local
        else cast("RemotePair", pair).why
    )
    titles = ("Raw backbone", f"Adapted (adapter {info.adapted.adapter})")
    found = (result.raw, result.adapted)
    columns = st.columns(2, gap="large")
    sides: tuple[Literal["raw", "adapted"], ...] = ("raw", "adapted")
    for cell, side, title, hits in zip(columns, sides, titles, found, strict=True):
        with cell:
            marks_key = refine_view.marks_key(side)
            render.show_results(
                title, hits, shared, options.columns, side, options.show_id, marks=marks_key
            )
            render.show_why(why, side, hits, query["image"], options.show_id)


def run(settings: compare.AppSettings) -> None:
    infos, problems = catalog.discover_indexes(settings.indexes)
    if not infos:
        render.show_no_index(settings, problems)
        return
    chosen, why_not = sidebar_pair(infos)
    if chosen is None:
        st.error(render.message(f"Cannot compare: {why_not}."))
        render.show_index_table(infos, problems)
        return
    sidebar_describe(chosen)
    fingerprints = (chosen.raw.backbone["fingerprint"], chosen.adapted.backbone["fingerprint"])
    pair = load_pair(str(chosen.raw.path), str(chosen.adapted.path), fingerprints, settings.api)
    pair.refresh()
    if chosen.raw.random_init:
        st.warning(
            f"**The backbone ({escape_markdown(chosen.raw.backbone.get('name'))}) is randomly initialised — "
            "untrained.** These results only exercise the pipeline; they say nothing clinical."
        )
    options = sidebar_options(pair.raw.metadata, settings)
    search, evaluation, collection, indexes, audit = st.tabs(
        ["Search", "Evaluation", "Map", "Indexes", "Audit"]
    )
    with search:
        search_tab(pair, chosen, options)
    with collection:
        map_view.map_tab(pair, options.columns)
    with evaluation:
        render.evaluation_tab(chosen, settings)
    with indexes:
        render.show_index_table(infos, problems)
    with audit:
        audit_tab.render_audit_choice(settings.reports)


def main() -> None:
    st.set_page_config(page_title="dinosearch · chest X-ray search", page_icon="🩻", layout="wide")
    st.title("Chest X-ray similarity search")
    st.caption("The most similar indexed films by the raw DINOv2 backbone and by the adapted one.")
    settings = compare.parse_settings(sys.argv[1:], os.environ)
    try:
        run(settings)
    except (ValueError, FileNotFoundError) as e:
        st.error(render.message(e))
    except Exception as e:  # a clinician never sees a traceback, nor a server path
        st.error(
            render.message(f"Something went wrong ({type(e).__name__}: {e}).")
            + " Please report this message."
        )


if __name__ == "__main__":
    main()
