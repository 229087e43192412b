"""The Streamlit app through Streamlit's own AppTest, and its logic (dinosearch.app.compare, .catalog) directly."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import assert_ranked, brute_force_ranking, ramp, write_dicom
from PIL import Image
from streamlit.testing.v1 import AppTest

from dinosearch.app import catalog, compare
from dinosearch.app.config import AppConfig
from dinosearch.app.launch import PAGE
from dinosearch.core.config import config_from_args
from dinosearch.evaluate.report import report_curve
from dinosearch.index import build_index

APP = PAGE  # the page inside the package; streamlit_app.py at the top is a thin entry point
ENTRY = Path(__file__).resolve().parents[1] / "streamlit_app.py"
RANK = re.compile(r"^\*\*#(\d+)\*\* · [\d.-]+(?: :violet-badge\[in both\])?$")


@pytest.fixture()
def page(app_root: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("DINOSEARCH_INDEXES", str(app_root / "indexes"))
    monkeypatch.delenv("DINOSEARCH_REPORTS", raising=False)
    return AppTest.from_file(str(APP), default_timeout=60).run()


def result_column(at: AppTest, title: str):
    """The result column whose subheader starts with ``title``."""
    return next(c for c in at.columns if any(s.value.startswith(title) for s in c.subheader))


def ranks(column) -> list[int]:
    return [int(m.group(1)) for md in column.markdown if (m := RANK.match(md.value))]


def card_ids(column) -> list[str]:
    """The ids on the result cards of ``column``, in the order shown (where the server shows ids)."""
    return [t.value.removeprefix("id: ") for t in column.text if t.value.startswith("id: ")]


def card_texts(column) -> list[str]:
    """The plain-text metadata lines of the result cards of ``column``."""
    return [t.value for t in column.text]


def png_bytes(path: Path) -> bytes:
    return path.read_bytes()


def all_text(at: AppTest) -> str:
    parts = [
        e.value
        for kind in ("markdown", "caption", "text", "error", "warning", "info", "subheader")
        for e in getattr(at, kind)
    ]
    return "\n".join(str(p) for p in parts)


def test_page_renders_pair_untrained_warning_and_report(page: AppTest) -> None:
    assert not page.exception
    assert page.title[0].value == "Chest X-ray similarity search"
    assert any("randomly initialised" in w.value and "untrained" in w.value for w in page.warning)
    sidebar = "\n".join(m.value for m in page.sidebar.markdown).replace("\\", "")  # unescaped
    assert "demo-raw" in sidebar and "demo-adapted" in sidebar
    assert "random init (UNTRAINED)" in sidebar and "12 images" in sidebar and "created" in sidebar
    assert [t.label for t in page.tabs] == ["Search", "Evaluation", "Map", "Indexes", "Audit"]
    evaluation = page.tabs[1]
    assert evaluation.subheader[0].value.startswith("Evaluation: demo-raw vs demo-adapted")
    table = evaluation.dataframe[0].value
    assert table.index[0] == "precision@1" and list(table.columns[:2]) == ["raw", "centred"]
    assert page.info[0].value.startswith("Upload a chest film")


def test_upload_shows_k_results_in_each_column(
    app_root: Path, image_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DINOSEARCH_INDEXES", str(app_root / "indexes"))
    monkeypatch.setenv("DINOSEARCH_SHOW_COLUMNS", "id")  # the server allows ids on cards
    page = AppTest.from_file(str(APP), default_timeout=60).run()
    film = next(image_folder.rglob("*.png"))
    page.sidebar.toggle(key="per-patient").set_value(False)  # every film, as brute force ranks
    page.sidebar.slider[0].set_value(5)
    page.file_uploader[0].set_value((film.name, png_bytes(film), "image/png")).run()
    assert not page.exception and not page.error
    assert ranks(result_column(page, "Raw backbone")) == [1, 2, 3, 4, 5]
    assert ranks(result_column(page, "Adapted")) == [1, 2, 3, 4, 5]
    # each column shows the films in the order brute force over that index's own vectors gives
    pair = compare.SideBySide(
        app_root / "indexes" / "demo-raw", app_root / "indexes" / "demo-adapted"
    )
    for side, searcher in (("Raw backbone", pair.raw), ("Adapted", pair.adapted)):
        ids = searcher.metadata["id"].astype(str).tolist()
        vectors = searcher.handle.vectors()
        row = searcher.metadata["path"].tolist().index(str(film))
        want, want_scores = brute_force_ranking(vectors, vectors[row])
        shown = card_ids(result_column(page, side))
        score_of = dict(zip([ids[i] for i in want], want_scores, strict=True))
        assert_ranked(shown, [score_of[i] for i in shown], [ids[i] for i in want[:5]])
        assert shown[0] == ids[row]
    assert any(m.label == "Overlap" for m in page.metric)
    assert any("As the backbone sees it" in c.value and "56×56" in c.value for c in page.caption)


def test_16bit_png_upload_with_known_label(page: AppTest, tmp_path: Path) -> None:
    film = tmp_path / "film16.png"
    Image.fromarray((np.linspace(0, 60000, 64 * 80).reshape(64, 80)).astype(np.uint16)).save(film)
    page.selectbox[0].set_value("normal")  # the uploader's "known finding"
    page.file_uploader[0].set_value((film.name, film.read_bytes(), "image/png")).run()
    assert not page.exception and not page.error
    labels = {m.label: m.value for m in page.metric}
    assert re.fullmatch(r"\d\.\d\d", labels["Raw precision"])
    assert re.fullmatch(r"\d\.\d\d", labels["Adapted precision"])


def test_corrupt_upload_shows_error_not_exception(page: AppTest) -> None:
    page.file_uploader[0].set_value(("broken.png", b"\x89PNG\r\n\x1a\nnot really", "image/png"))
    page.run()
    assert not page.exception
    assert len(page.error) == 1 and "Could not read broken.png" in page.error[0].value
    assert not any(s.value == "Raw backbone" for s in page.subheader)


def test_dicom_upload_never_shows_header_fields(page: AppTest, tmp_path: Path) -> None:
    film = write_dicom(tmp_path / "study.dcm", ramp(64, 64), window=(2000, 4000))
    page.sidebar.toggle(key="per-patient").set_value(False)  # 8 films (6 patients only)
    page.file_uploader[0].set_value(("study.dcm", film.read_bytes(), "application/dicom")).run()
    assert not page.exception and not page.error
    assert ranks(result_column(page, "Raw backbone")) == list(range(1, 9))
    text = all_text(page)
    assert "DICOM windowed" in text
    assert "Test^Patient" not in text and "PatientName" not in text


def test_patient_columns_hidden_unless_the_server_allows_them(
    page: AppTest, app_root: Path
) -> None:
    page.radio[0].set_value("Pick from the collection").run()
    page.checkbox[0].uncheck()
    page.sidebar.slider[0].set_value(12).run()
    assert not page.exception
    shown = page.sidebar.multiselect[0]
    assert shown.options == ["label", "view"] and "patient_id" not in shown.value
    assert "patient_id:" not in all_text(page) and "P00" not in all_text(page)
    # nor the id (for folder inputs, the file's relative path): not on cards, not in pickers
    ids = pd.read_parquet(app_root / "features" / "metadata.parquet")["id"].astype(str)
    pickers = [o for box in page.selectbox for o in box.options]
    assert not card_ids(result_column(page, "Raw backbone"))
    assert not any(i in text for i in ids for text in [all_text(page), *pickers])


def test_config_serves_localhost_only() -> None:
    import tomllib

    config = tomllib.loads((ENTRY.parent / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"


def test_gallery_pick_excludes_its_patient(app_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DINOSEARCH_INDEXES", str(app_root / "indexes"))
    monkeypatch.setenv("DINOSEARCH_SHOW_COLUMNS", "patient_id")  # the server allows it
    page = AppTest.from_file(str(APP), default_timeout=60).run()
    page.radio[0].set_value("Pick from the collection").run()
    page.selectbox[0].set_value(0)  # row 0 of the raw index
    page.sidebar.toggle(key="per-patient").set_value(False)  # every film
    page.sidebar.slider[0].set_value(10).run()
    assert not page.exception and not page.error
    patient = "P00"  # row 0 and its sibling film share patient P00 (see conftest.app_root)
    for side in ("Raw backbone", "Adapted"):
        column = result_column(page, side)
        texts = card_texts(column)
        assert ranks(column) == list(range(1, 11))  # 12 images − 2 of the patient
        assert texts and not any(f"patient_id: {patient}" in c for c in texts)
    assert any(m.label == "Raw precision" and m.value != "—" for m in page.metric)
    page.checkbox[0].uncheck()
    page.sidebar.slider[0].set_value(12).run()
    texts = card_texts(result_column(page, "Raw backbone"))
    assert sum(f"patient_id: {patient}" in c for c in texts) == 2  # itself and its sibling


def test_filters_and_columns(page: AppTest, image_folder: Path) -> None:
    film = next(image_folder.rglob("*.png"))
    page.sidebar.multiselect(key="filter-view").set_value(["AP"])
    page.file_uploader[0].set_value((film.name, png_bytes(film), "image/png")).run()
    texts = [c for c in card_texts(result_column(page, "Raw backbone")) if "view:" in c]
    assert len(texts) == 4 and all("view: AP" in c for c in texts)
    assert len(ranks(result_column(page, "Raw backbone"))) == 4  # only 4 AP films exist


def test_no_index_says_run_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DINOSEARCH_INDEXES", str(tmp_path / "empty"))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    assert "dinosearch demo --images" in at.info[0].value


def test_top_level_entry_point_opens_the_packaged_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DINOSEARCH_INDEXES", str(tmp_path / "empty"))
    at = AppTest.from_file(str(ENTRY), default_timeout=60).run()
    assert not at.exception and at.title[0].value == "Chest X-ray similarity search"
    assert "dinosearch app --indexes DIR" in at.info[0].value
    assert str(tmp_path) not in at.info[0].value  # the folder's name only, not its server path


def test_mismatched_pair_is_a_friendly_error(page: AppTest) -> None:
    page.sidebar.toggle[0].set_value(True).run()
    raw_box, adapted_box = page.sidebar.selectbox[0], page.sidebar.selectbox[1]
    raw_box.set_value("demo-adapted")
    adapted_box.set_value("demo-raw").run()
    assert not page.exception
    assert "Cannot compare" in page.error[0].value and "adapter" in page.error[0].value


# ---- logic without Streamlit ----


def test_settings_precedence(tmp_path: Path) -> None:
    env = {"DINOSEARCH_INDEXES": "/env/indexes", "DINOSEARCH_SHOW_COLUMNS": "label,PatientAge"}
    s = compare.parse_settings(["--indexes", str(tmp_path / "idx")], env)
    assert s.indexes == tmp_path / "idx" and s.show_columns == ("label", "PatientAge")
    assert s.reports[0] == (tmp_path / "reports").resolve()
    assert compare.parse_settings([], {}).indexes == Path("indexes")
    assert compare.display_columns(["label", "PatientName", "view"], ()) == ["label", "view"]
    allowed = compare.display_columns(["label", "patient_id", "PatientName"], ("PatientName",))
    assert allowed == ["label", "PatientName"]


def test_discover_pair_and_report(app_root: Path) -> None:
    infos, problems = catalog.discover_indexes(app_root / "indexes")
    assert [i.name for i in infos] == ["demo-adapted", "demo-raw"] and not problems
    (pair,) = catalog.find_comparisons(infos)
    assert (pair.raw.name, pair.adapted.name) == ("demo-raw", "demo-adapted")
    assert "adapter" in (catalog.comparison_problem(pair.adapted, pair.raw) or "")
    report = catalog.find_report(pair, [app_root / "reports"])
    assert report is not None and report.plot is not None
    assert list(report_curve(report.result).index) == [1, 5]


def test_agreement_metrics() -> None:
    assert compare.overlap_at_k(["a", "b", "c"], ["c", "a", "x"], 3) == pytest.approx(2 / 3)
    assert compare.overlap_at_k(["a", "b", "c"], ["c", "a", "x"], 1) == 0.0
    assert compare.label_precision(["x", "y|x", "z", "x"], "x", 3) == pytest.approx(2 / 3)
    assert compare.label_precision(["x"], None, 1) is None


def test_one_forward_per_query_and_new_version_picked_up(
    app_root: Path, tmp_path: Path, image_folder: Path
) -> None:
    root = tmp_path / "indexes"
    shutil.copytree(app_root / "indexes", root)
    pair = compare.SideBySide(root / "demo-raw", root / "demo-adapted")
    assert pair.adapted.backbone is pair.raw.backbone
    calls = []
    forward = pair.raw.backbone.forward
    pair.raw.backbone.forward = lambda x: calls.append(len(x)) or forward(x)  # type: ignore[method-assign]
    image = Image.open(next(image_folder.rglob("*.png")))
    first = pair.query(image, 3)
    assert calls == [1] and len(first.raw) == len(first.adapted) == 3
    build_index(app_root / "features", root / "demo-raw")  # publish v000002 while "running"
    pair.query(image, 3)
    assert pair.raw.handle.version == "v000002" and calls == [1, 1]


def test_upload_size_limit_and_model_view(tiny_backbone) -> None:
    with pytest.raises(compare.ImageReadError, match="over the 1 MB limit"):
        compare.read_query(b"\0" * (2 * 2**20), "huge.png", max_mb=1)
    seen = compare.model_view(Image.new("L", (300, 200)), tiny_backbone.preprocess)
    assert seen.size == (56, 56) and seen.mode == "RGB"


def test_upload_of_another_file_type_is_a_friendly_error(page: AppTest) -> None:
    exe = ("setup.exe", b"MZ\x90\x00" + b"\0" * 64, "application/x-msdownload")
    page.file_uploader[0].set_value(exe).run()
    assert not page.exception
    assert len(page.error) == 1 and "Could not read setup.exe" in page.error[0].value


def test_dinosearch_app_flags_become_the_streamlit_command(tmp_path: Path) -> None:
    from dinosearch.app.launch import launch_command, streamlit_argv, streamlit_env
    from dinosearch.cli import build_parser

    args = build_parser().parse_args(
        ["app", "--indexes", "idx", "--port", "9", "--show-columns", "id, patient_id"]
    )
    argv = streamlit_argv(config_from_args(AppConfig, args))
    assert argv[1:5] == ["-m", "streamlit", "run", str(PAGE)] and PAGE.is_file()
    server = dict(zip(argv[5 : argv.index("--") : 2], argv[6 : argv.index("--") : 2], strict=True))
    assert server["--server.address"] == "127.0.0.1" and server["--server.port"] == "9"
    assert server["--server.maxUploadSize"] == str(compare.MAX_UPLOAD_MB)
    page_flags = argv[argv.index("--") + 1 :]
    settings = compare.parse_settings(page_flags, {})
    assert settings.indexes == Path("idx") and settings.show_columns == ("id", "patient_id")
    assert streamlit_env({})["PYTHONPATH"].split(os.pathsep)[0] == str(PAGE.parents[2])
    command = launch_command(tmp_path / "indexes").split()
    assert command[1:4] == ["-m", "dinosearch", "app"] and command[-2] == "--indexes"
