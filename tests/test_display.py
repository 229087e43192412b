"""Metadata is text wherever it is shown (app, report.md, plots), and no server path or identifier
leaks onto a page or into ``search --json`` when the privacy setting asks (issue 21, classes 5, 7, 8)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from helpers import save_untrained_adapter
from streamlit.testing.v1 import AppTest

from dinosearch.app.launch import PAGE
from dinosearch.core.text import MAX_SHOWN, cut, escape_markdown, hide_paths

HOSTILE_ID = "x` **bold** `y"
L_IMG = "![x](http://127.0.0.1:9/p.png)"
L_RED = ":red[**AI verdict: NORMAL**]"
L_MATH = r"$\notacommand{x}$"
L_LONG = "L" * 200
VIEW = "<b>PA</b> $x$"
# Raw fragments that would act as Markdown (image, directive, code span break-out, LaTeX, HTML).
MARKUP = ("![x](", ":red[", "` **bold** `", r"$\notacommand", "<b>", "$x$")
INTERPRETING = ("markdown", "caption", "subheader", "title", "info", "warning", "error", "success")


@pytest.fixture(scope="module")
def hostile_root(tmp_path_factory: pytest.TempPathFactory, image_folder: Path, tiny_backbone):
    """A raw + adapted pair whose manifest values are Markdown, HTML, mathtext and very long, plus
    one indexed film deleted and one corrupted after indexing, and its eval report."""
    from dinosearch.evaluate.indexes import evaluate_indexes
    from dinosearch.features.folder import embed_to_folder
    from dinosearch.index import build_index
    from dinosearch.inputs.records import load_records

    root = tmp_path_factory.mktemp("hostile")
    films = root / "films"
    films.mkdir()
    sources = sorted(p for p in image_folder.rglob("*.png"))
    assert len(sources) >= 3
    paths = [Path(shutil.copy(sources[i % len(sources)], films / f"film{i}.png")) for i in range(8)]
    paths += [Path(shutil.copy(sources[0], films / n)) for n in ("gone.png", "corrupt.png")]
    labels = [L_IMG, L_RED, L_MATH, L_LONG] * 2 + [L_IMG, L_RED]
    manifest = pd.DataFrame(
        {
            "id": [HOSTILE_ID, *(f"film-{i}" for i in range(1, len(paths)))],
            "path": [str(p) for p in paths],
            "label": labels,
            "view": [VIEW, "AP"] * 5,
            "source_repo": ["repo `a`", "repo b"] * 5,
            "patient_id": [f"P{i // 2}" for i in range(len(paths))],
        }
    )
    manifest.to_csv(root / "manifest.csv", index=False)
    records, _ = load_records(root / "manifest.csv")
    embed_to_folder(records, tiny_backbone, root / "features", batch_size=8, num_workers=0)
    save_untrained_adapter(root / "adapter", tiny_backbone)
    build_index(root / "features", root / "indexes" / "h-raw")
    build_index(root / "features", root / "indexes" / "h-adapted", adapter_dir=root / "adapter")
    evaluate_indexes(
        root / "indexes" / "h-raw",
        root / "indexes" / "h-adapted",
        root / "reports" / "h",
        group_column="patient_id",
        ks=[1, 3],
        n_boot=20,
    )
    (films / "gone.png").unlink()
    (films / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    return root


def open_page(root: Path, monkeypatch: pytest.MonkeyPatch, show: str = "") -> AppTest:
    monkeypatch.setenv("DINOSEARCH_INDEXES", str(root / "indexes"))
    monkeypatch.delenv("DINOSEARCH_REPORTS", raising=False)
    monkeypatch.setenv("DINOSEARCH_SHOW_COLUMNS", show)
    return AppTest.from_file(str(PAGE), default_timeout=90).run()


def interpreted(at: AppTest) -> list[str]:
    """Every string the page hands to an element that renders Markdown."""
    return [str(e.value) for kind in INTERPRETING for e in getattr(at, kind)]


def everything(at: AppTest) -> str:
    """All text on the page, including plain text, metrics, tables and picker options."""
    parts = interpreted(at) + [str(t.value) for t in at.text]
    parts += [str(o) for box in at.selectbox for o in box.options]
    parts += [df.value.to_csv() for df in at.dataframe]
    return "\n".join(parts)


def test_hostile_metadata_is_plain_text_on_cards(
    hostile_root: Path, image_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = open_page(hostile_root, monkeypatch, show="id")
    page.sidebar.slider[0].set_value(10)
    film = hostile_root / "films" / "film0.png"
    page.file_uploader[0].set_value((film.name, film.read_bytes(), "image/png")).run()
    assert not page.exception
    for value in interpreted(page):  # nothing the manifest says reaches Markdown raw
        assert not any(m in value for m in MARKUP), value
    texts = [t.value for t in page.text]
    # each value shown exactly, as a plain-text element (st.text interprets nothing)
    assert f"id: {HOSTILE_ID}" in texts and L_IMG in texts and L_RED in texts and L_MATH in texts
    assert "L" * (MAX_SHOWN - 1) + "…" in texts and L_LONG not in texts  # cut with an ellipsis
    assert any(t.startswith(f"view: {VIEW} · source_repo: repo `a`") for t in texts)


def test_no_server_path_on_the_page_for_missing_or_corrupt_films(
    hostile_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = pd.read_parquet(hostile_root / "features" / "metadata.parquet")["path"].tolist()
    for name in ("gone.png", "corrupt.png"):
        page = open_page(hostile_root, monkeypatch)
        page.radio[0].set_value("Pick from the collection").run()
        picker = next(b for b in page.selectbox if b.label == "Image from the indexed collection")
        picker.set_value(next(i for i, p in enumerate(paths) if p.endswith(name))).run()
        assert not page.exception
        assert len(page.error) == 1 and name in page.error[0].value
        text = everything(page)
        assert str(hostile_root) not in text and "/films/" not in text, text
        assert HOSTILE_ID not in text  # ids are not shown unless the server allows them
        assert "Evaluation: h-raw vs h-adapted" in text  # the report was found...
        assert "reports/h" not in text  # ...and its folder is not printed


def test_report_md_escapes_pipes_and_newlines(hostile_root: Path) -> None:
    from dinosearch.evaluate.report import markdown

    data = json.loads((hostile_root / "reports" / "h" / "report.json").read_text())
    result, meta = data["result"], data["meta"]
    evil = "a | b\nnext line | c"
    for m in result["methods"]:
        per = result["per_label"][m]
        per[evil] = per.pop(next(iter(per)))
    text = markdown(result, meta)
    section = text.split("## Per label")[1].split("\n## ")[0].strip().splitlines()[1:]
    table = [line for line in section if line.strip()]
    cells = [len(re.findall(r"(?<!\\)\|", line)) for line in table]
    assert len(set(cells)) == 1, table  # every row has the header's number of columns
    assert all(line.startswith("|") for line in table) and len(table) >= 5
    assert any(line.startswith("| a \\| b next line \\| c |") for line in table), table


def test_eval_report_draws_hostile_labels_as_typed(hostile_root: Path) -> None:
    """The fixture's eval ran on labels with `$…$` (invalid mathtext) without raising."""
    report = hostile_root / "reports" / "h"
    assert (report / "report.png").stat().st_size > 10_000
    assert "\\$\\\\notacommand\\{x\\}\\$" in (report / "report.md").read_text()


def test_a_20_mb_label_is_cut_before_plotting(
    hostile_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matplotlib.figure
    import matplotlib.text

    from dinosearch.evaluate.report import markdown, plot

    data = json.loads((hostile_root / "reports" / "h" / "report.json").read_text())
    result, meta = data["result"], data["meta"]
    huge = "$" + "A" * 20_000_000  # 20 MB, with an unmatched $
    for m in result["methods"]:
        per = result["per_label"][m]
        per[huge] = per.pop(next(iter(per)))
    drawn: list[str] = []
    save = matplotlib.figure.Figure.savefig

    def spy(fig: matplotlib.figure.Figure, *args, **kwargs) -> None:
        drawn.extend(t.get_text() for t in fig.findobj(matplotlib.text.Text))
        save(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    plot(result, meta, tmp_path / "report.png")
    assert "$" + "A" * (MAX_SHOWN - 2) + "…" in drawn  # the tick label, cut
    assert max(map(len, drawn)) <= 200  # no text matplotlib lays out is longer
    assert max(map(len, markdown(result, meta).splitlines())) < 2000


def test_search_json_hides_identifiers_when_asked(
    hostile_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from dinosearch.cli import main

    film = str(hostile_root / "films" / "film1.png")
    argv = ["search", "--index", str(hostile_root / "indexes" / "h-raw"), "--image", film]
    argv += ["-k", "3", "--json"]
    monkeypatch.delenv("DINOSEARCH_HIDE_IDENTIFIERS", raising=False)
    monkeypatch.delenv("DINOSEARCH_SHOW_COLUMNS", raising=False)

    def rows(*extra: str) -> list[dict]:
        assert main([*argv, *extra]) == 0
        return json.loads(capsys.readouterr().out)["results"]

    assert {"id", "path", "patient_id", "label"} <= set(rows()[0])  # as before when not asked
    hidden = rows("--hide-identifiers")
    assert len(hidden) == 3
    assert all(set(r) == {"rank", "score", "label", "view", "source_repo"} for r in hidden)
    monkeypatch.setenv("DINOSEARCH_HIDE_IDENTIFIERS", "1")
    monkeypatch.setenv("DINOSEARCH_SHOW_COLUMNS", "id")  # the app's setting, allowing ids
    assert all(set(r) == {"rank", "score", "label", "view", "source_repo", "id"} for r in rows())


def test_text_helpers() -> None:
    assert cut("a" * 100) == "a" * 79 + "…" and cut("a\nb") == "a b" and cut(3) == "3"
    assert escape_markdown(L_IMG) == r"\!\[x\]\(http\://127.0.0.1\:9/p.png\)"
    assert escape_markdown("`x`") == r"\`x\`"
    message = "Could not read /srv/pacs/P123/film 1.png: gone; see C:\\data\\P9\\a.dcm"
    shown = hide_paths(message)
    assert shown.startswith("Could not read …/film") and shown.endswith("see …/a.dcm")
    assert not any(s in shown for s in ("/srv", "P123", "P9"))
    assert hide_paths("http://host/a and ./rel/x") == "http://host/a and ./rel/x"
