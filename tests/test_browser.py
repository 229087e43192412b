"""End to end in a real headless Chromium: start the app, upload a film, see both result columns."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from dinosearch.app.config import AppConfig
from dinosearch.app.launch import streamlit_argv, streamlit_env

CHROMIUM = shutil.which("chromium")  # Debian's; a test tool's own browser is never downloaded
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(port: int, server: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"streamlit exited with {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"streamlit did not answer on port {port} in {timeout:.0f} s:\n{log.read_text()}")


@contextlib.contextmanager
def streamlit_server(indexes: str, cwd: Path, env: dict[str, str]) -> Iterator[tuple[str, Path]]:
    """What `dinosearch app` runs, from ``cwd`` (a folder with no config beside it), on a free
    localhost port: yields (URL, log file); stopped by its PID."""
    port, log = free_port(), cwd / "streamlit.log"
    command = streamlit_argv(AppConfig(indexes=indexes, port=port))
    with open(log, "w") as out:
        proc = subprocess.Popen(command, cwd=cwd, env=streamlit_env(env), stdout=out, stderr=out)
    try:
        wait_healthy(port, proc, log)
        yield f"http://127.0.0.1:{port}", log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture()
def server(app_root: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``dinosearch app``'s Streamlit command against the fixture indexes."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with streamlit_server(str(app_root / "indexes"), tmp_path, env) as running:
        yield running


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not on PATH (Debian package `chromium`)")
def test_upload_in_headless_chromium(
    server: tuple[str, Path], image_folder: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, log = server
    film = next(image_folder.rglob("*.png"))
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # new, empty user-data-dir
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1600, "height": 1200},
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(60_000)
            expect.set_options(timeout=60_000)  # the first run imports torch and loads the model
            page.goto(url)
            expect(page.get_by_text("randomly initialised").first).to_be_visible()
            page.locator("input[type='file']").set_input_files(str(film))
            for side in ("raw", "adapted"):
                cards = page.locator(f".st-key-results-{side} [data-testid='stImage']")
                expect(cards).to_have_count(6)  # one case per patient: 6 patients of 2 films
            expect(page.get_by_text("Agreement in the top 8")).to_be_visible()
            assert page.get_by_text("Traceback").count() == 0
            assert page.get_by_test_id("stException").count() == 0
            page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "app.png").stat().st_size > 10_000, log.read_text()
