"""The refine controls in a real headless Chromium: one case per patient, a region, similar marks
and search again, the collection map and a click on it. Screenshots go to ``tmp_path``, and to
``$DINOSEARCH_SCREENSHOTS`` when set (docs/refine_*.png were made that way on the shared X-rays:
``DINOSEARCH_BROWSER_INDEXES=/tmp/bench_feedback/indexes``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_browser import CHROMIUM, CHROMIUM_ARGS, streamlit_server


@pytest.fixture()
def server(app_root: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    indexes = os.environ.get("DINOSEARCH_BROWSER_INDEXES") or str(app_root / "indexes")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "DINOSEARCH_CACHE": str(tmp_path)}
    with streamlit_server(indexes, tmp_path, env) as running:
        yield running


def shoot(page, tmp_path: Path, name: str) -> None:
    page.wait_for_timeout(2000)  # thumbnails load after the cards
    path = tmp_path / f"refine_{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    if os.environ.get("DINOSEARCH_SCREENSHOTS"):
        shutil.copy(path, Path(os.environ["DINOSEARCH_SCREENSHOTS"]) / path.name)


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not on PATH (Debian package `chromium`)")
def test_refine_controls_in_headless_chromium(
    server: tuple[str, Path], image_folder: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, log = server
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1600, "height": 1300},
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(90_000)
            expect.set_options(timeout=90_000)
            page.goto(url)
            expect(page.get_by_text("randomly initialised").first).to_be_visible()
            page.get_by_text("Pick from the collection").click()
            raw_cards = page.locator(".st-key-results-raw [data-testid='stImage']")
            expect(raw_cards.first).to_be_visible()
            expect(page.get_by_text("other film of this patient match").first).to_be_visible()
            page.get_by_text("Search a region of the film").click()
            expect(page.get_by_text("outlined region only")).to_be_visible()
            shoot(page, tmp_path, "region")
            page.locator(".st-key-results-raw").get_by_text("similar", exact=True).nth(1).click()
            page.get_by_role("button", name="Search again with my marks").click()
            expect(page.get_by_text("Query moved by your marks")).to_be_visible()
            expect(raw_cards.first).to_be_visible()
            shoot(page, tmp_path, "feedback")
            page.get_by_role("tab", name="Map").click()
            charts = page.locator("[data-testid='stVegaLiteChart']")
            before = charts.count()  # the Evaluation tab's curve, where a report exists
            page.get_by_text("Show the collection map").click()
            expect(charts).to_have_count(before + 2, timeout=400_000)  # first UMAP: numba compiles
            expect(page.get_by_text("Laying out the collection")).to_have_count(0, timeout=400_000)
            expect(charts.nth(before + 1).locator("canvas, svg").first).to_be_visible()
            page.wait_for_timeout(1500)
            shoot(page, tmp_path, "map")
            assert page.get_by_text("Traceback").count() == 0
            assert page.get_by_test_id("stException").count() == 0
        finally:
            browser.close()
    assert "Traceback" not in log.read_text()
