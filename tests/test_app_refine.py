"""The app's refine controls through AppTest: one case per patient, filters (values, ranges, SQL),
diversity, region, similar / not similar marks (tiny untrained backbone)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import save_untrained_adapter
from PIL import Image
from streamlit.testing.v1 import AppTest
from test_app import APP, card_ids, card_texts, png_bytes, ranks, result_column

from dinosearch.app import compare
from dinosearch.features.folder import embed_to_folder
from dinosearch.index import build_index
from dinosearch.inputs.records import load_records


@pytest.fixture(scope="module")
def aged_root(app_root: Path, tiny_backbone, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The app's demo pair again, with a numeric patient_age column (for the range control)."""
    import torch

    root = tmp_path_factory.mktemp("aged")
    manifest = pd.read_csv(app_root / "manifest.csv")
    manifest["patient_age"] = 30 + 5 * np.arange(len(manifest))
    manifest.to_csv(root / "manifest.csv", index=False)
    records, _ = load_records(root / "manifest.csv")
    embed_to_folder(records, tiny_backbone, root / "f", batch_size=8, num_workers=0, progress=False)
    torch.manual_seed(0)
    save_untrained_adapter(root / "adapter", tiny_backbone)
    build_index(root / "f", root / "indexes" / "demo-raw")
    build_index(root / "f", root / "indexes" / "demo-adapted", adapter_dir=root / "adapter")
    return root


@pytest.fixture()
def page(aged_root: Path, image_folder: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    """The page on the aged pair, ids and patient columns allowed, a film uploaded, k = 12."""
    monkeypatch.setenv("DINOSEARCH_INDEXES", str(aged_root / "indexes"))
    monkeypatch.setenv("DINOSEARCH_SHOW_COLUMNS", "id,patient_id,patient_age")
    monkeypatch.delenv("DINOSEARCH_REPORTS", raising=False)
    monkeypatch.setenv("DINOSEARCH_CACHE", str(aged_root / "cache"))  # the maps go here
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    film = next(image_folder.rglob("*.png"))
    at.sidebar.slider[0].set_value(12)
    at.file_uploader[0].set_value((film.name, png_bytes(film), "image/png")).run()
    assert not at.exception and not at.error
    return at


def patients(at: AppTest, side: str = "Raw backbone") -> list[str]:
    texts = card_texts(result_column(at, side))
    return [t.split("patient_id: ")[1].split(" · ")[0] for t in texts if "patient_id: " in t]


def local_query(root: Path, image_folder: Path) -> tuple[compare.SideBySide, Image.Image]:
    """The page's index pair opened in-process, and the film the page was asked about."""
    pair = compare.SideBySide(root / "indexes" / "demo-raw", root / "indexes" / "demo-adapted")
    film = next(image_folder.rglob("*.png"))
    return pair, compare.read_query(film.read_bytes(), film.name)


def test_one_case_per_patient_by_default(page: AppTest) -> None:
    shown = patients(page)
    assert len(shown) == 6 and len(set(shown)) == 6  # 12 films of 6 patients: one each
    assert sum("+1 other film of this patient match" in c.value for c in page.caption) == 12
    page.sidebar.toggle(key="per-patient").set_value(False).run()
    assert len(patients(page)) == 12  # every film


def test_value_range_and_sql_filters(page: AppTest) -> None:
    page.sidebar.toggle(key="per-patient").set_value(False)
    page.sidebar.multiselect(key="filter-view").set_value(["PA"])
    page.sidebar.slider(key="range-patient_age").set_value((40.0, 70.0)).run()
    texts = [t for t in card_texts(result_column(page, "Raw backbone")) if "patient_age" in t]
    ages = [int(float(t.split("patient_age: ")[1].split(" ")[0])) for t in texts]
    assert texts and all("view: PA" in t for t in texts) and all(40 <= a <= 70 for a in ages)
    page.sidebar.text_input(key="filter-sql").input("patient_age < 50 OR label = 'normal'").run()
    texts = card_texts(result_column(page, "Raw backbone"))
    assert not page.error and texts
    for t in (t for t in texts if "patient_age" in t):
        age = int(float(t.split("patient_age: ")[1].split(" ")[0]))
        assert 40 <= age < 50 or "normal" in " ".join(texts)
    for hostile in ("1; DROP TABLE metadata", "read_csv('/etc/passwd') IS NULL", "path = 'x'"):
        page.sidebar.text_input(key="filter-sql").input(hostile).run()
        assert not page.exception and len(page.error) == 1
        assert "\n" not in page.error[0].value.strip() and "filter" in page.error[0].value


def test_region_control(page: AppTest, aged_root: Path, image_folder: Path) -> None:
    page.sidebar.toggle(key="per-patient").set_value(False)
    page.checkbox(key="region-on").check().run()
    page.slider(key="region-x").set_value((0, 50)).run()
    assert not page.exception and not page.error
    assert any("outlined region" in c.value for c in page.caption)
    pair, image = local_query(aged_root, image_folder)
    w, h = image.size
    want = pair.query(image, 12, region=(0, 0, w / 2, h))
    assert card_ids(result_column(page, "Raw backbone")) == [str(i) for i in want.raw.rows["id"]]
    whole = pair.query(image, 12)
    assert not np.allclose(whole.raw.scores, want.raw.scores)


def test_similar_marks_move_the_query(page: AppTest, aged_root: Path, image_folder: Path) -> None:
    page.sidebar.toggle(key="per-patient").set_value(False).run()
    first = card_ids(result_column(page, "Raw backbone"))
    page.checkbox(key="like-raw-0-3").check()
    page.checkbox(key="unlike-raw-0-2").check()
    page.button(key="fb-apply").click().run()
    assert not page.exception and not page.error
    assert any("Query moved by your marks" in c.value for c in page.caption)
    pair, image = local_query(aged_root, image_folder)
    marks = {"raw": ([first[2]], [first[1]]), "adapted": ([], [])}
    want = pair.query(image, 12, feedback=marks)
    assert card_ids(result_column(page, "Raw backbone")) == [str(i) for i in want.raw.rows["id"]]
    assert ranks(result_column(page, "Adapted")) == list(range(1, 13))
    page.button(key="fb-clear").click().run()
    assert card_ids(result_column(page, "Raw backbone")) == first


def test_diversity_control(page: AppTest) -> None:
    page.sidebar.toggle(key="per-patient").set_value(False)
    page.sidebar.slider[0].set_value(4)
    page.sidebar.slider(key="diversity").set_value(0.6).run()
    assert not page.exception and not page.error
    assert ranks(result_column(page, "Raw backbone")) == [1, 2, 3, 4]
    assert page.sidebar.slider(key="diversity").value == 0.6


def test_map_tab_marks_results_and_a_picked_film_becomes_the_query(
    page: AppTest, aged_root: Path
) -> None:
    from dinosearch.app.map_view import PICK

    assert not page.get("vega_lite_chart")  # off until asked for
    page.toggle(key="map-on").set_value(True).run()
    charts = page.get("vega_lite_chart")
    assert not page.error, page.error[0].value
    assert len(charts) == 2 and not page.exception
    assert len(list((aged_root / "cache" / "maps").glob("*.npz"))) == 2  # raw and adapted, cached
    assert any("Click a film to search with it" in c.value for c in page.caption)
    page.selectbox(key="map-colour").set_value("view").run()
    assert not page.exception and len(page.get("vega_lite_chart")) == 2
    page.session_state[PICK] = 5  # what a click on film 5 leaves (map_view._picked)
    page.run()
    assert page.radio(key="query-source").value == "Pick from the collection"
    assert page.selectbox(key="query-row").value == 5
    assert not page.exception and ranks(result_column(page, "Raw backbone"))
