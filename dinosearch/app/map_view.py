"""The app's Map tab: each index's collection map (``explain.collection``), raw and adapted side by
side, coloured by a shown column, the query and its results marked; clicking a film makes it the
query (the page reads ``PICK`` before it draws the query picker)."""

from __future__ import annotations

from typing import Any

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from dinosearch.app import compare

PICK = "map-query"  # session key: the collection row a click on the map chose
LAST = "map-last"  # session key: side → (result rows, scores, query row or None) of the last search


@st.cache_resource(
    show_spinner="Laying out the collection (once per index version) …", max_entries=8
)
def load_map(path: str, version: str, _handle: Any) -> Any:
    """The map of one index version (a new version: a new entry; on disk: ``explain.collection``)."""
    from dinosearch.explain.collection import collection_map

    return collection_map(_handle)


def remember(result: compare.SideBySideResult, query_row: int | None) -> None:
    """What the Map tab marks: each column's result rows and scores, and the query's row."""
    st.session_state[LAST] = {
        "raw": (result.raw.ids.tolist(), result.raw.scores.tolist(), query_row),
        "adapted": (result.adapted.ids.tolist(), result.adapted.scores.tolist(), query_row),
    }


def take_pick(count: int) -> None:
    """Before the query picker is drawn: a clicked film (row < ``count``) becomes the query."""
    picked = st.session_state.pop(PICK, None)
    if picked is not None and 0 <= picked < count:
        st.session_state["query-source"] = "Pick from the collection"
        st.session_state["query-row"] = int(picked)


def _picked(key: str) -> None:
    """Chart callback: the clicked point's row becomes the query (a collection pick)."""
    points = (st.session_state.get(key) or {}).get("selection", {}).get("pick", [])
    if points and "row" in points[0]:
        st.session_state[PICK] = int(points[0]["row"])


def frame(xy: np.ndarray, metadata: pd.DataFrame, color: str, side: str) -> pd.DataFrame:
    """One row per film: x, y, row, the colour column as text, and its role (film/result/query)."""
    data = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "row": np.arange(len(xy))})
    data[color] = metadata[color].astype(str).to_numpy()
    data["role"] = "film"
    ids, scores, query_row = st.session_state.get(LAST, {}).get(side, ([], [], None))
    data.loc[data["row"].isin(ids), "role"] = "result"
    if query_row is not None and 0 <= query_row < len(data):
        data.loc[data["row"] == query_row, "role"] = "query"
    elif len(ids):
        from dinosearch.explain.collection import place_query

        x, y = place_query(xy, np.asarray(ids), np.asarray(scores))
        outside = {"x": x, "y": y, "row": -1, color: "(query)", "role": "query"}
        data = pd.concat([data, pd.DataFrame([outside])], ignore_index=True)
    order = data["role"].map({"film": 0, "result": 1, "query": 2})
    return data.iloc[np.argsort(order.to_numpy(), kind="stable")]  # marks drawn last, on top


def chart(data: pd.DataFrame, color: str, title: str) -> alt.Chart:
    pick = alt.selection_point(name="pick", fields=["row"], on="click")
    size = alt.Size("role:N", scale=alt.Scale(domain=["film", "result", "query"], range=[10, 120, 320]), legend=None)  # fmt: skip
    shape = alt.Shape("role:N", scale=alt.Scale(domain=["film", "result", "query"], range=["circle", "diamond", "cross"]))  # fmt: skip
    return (
        alt.Chart(data, title=title)
        .mark_point(filled=True)
        .encode(
            x=alt.X("x:Q", axis=None),
            y=alt.Y("y:Q", axis=None),
            color=alt.Color(f"{color}:N"),
            opacity=alt.condition("datum.role == 'film'", alt.value(0.45), alt.value(1.0)),
            stroke=alt.condition("datum.role == 'film'", alt.value(None), alt.value("black")),
            size=size,
            shape=shape,
            tooltip=[alt.Tooltip(f"{color}:N"), alt.Tooltip("role:N")],
        )
        .add_params(pick)
    )


def map_tab(pair: compare.SideBySide, columns: list[str]) -> None:
    """Off until asked for: the first layout of a large index takes minutes (then it is cached)."""
    if not st.toggle("Show the collection map", key="map-on"):
        st.caption(
            "Laid out once per index version, then cached (UMAP: about 10 minutes for 100k films "
            "on a 2-core machine; seconds for a few thousand)."
        )
        return
    shown = [c for c in columns if c in pair.raw.metadata.columns] or ["label"]
    color = st.selectbox("Colour by", shown, key="map-colour")
    st.caption(
        "Each point is one film, laid out by UMAP (PCA for under 50 films) from that index's own "
        "vectors, once per index version. ◆ results of the last search, ✚ its query (an uploaded "
        "film sits at the weighted mean of its top 3). Click a film to search with it."
    )
    cells = st.columns(2, gap="large")
    for cell, side, searcher in zip(
        cells, ("raw", "adapted"), (pair.raw, pair.adapted), strict=True
    ):
        with cell:
            handle = searcher.handle
            built = load_map(str(searcher.index_dir), handle.version, handle)
            data = frame(built.xy, searcher.metadata, color, side)
            title = (
                f"{side.capitalize()} · {built.method.upper()} · version {searcher.handle.version}"
            )
            key = f"map-{side}"
            st.altair_chart(
                chart(data, color, title),
                key=key,
                on_select=lambda key=key: _picked(key),
                selection_mode="pick",
                width="stretch",
            )
