"""Start the app: the page file inside the package and the ``streamlit run`` command line for it."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

from dinosearch.app.compare import MAX_UPLOAD_MB
from dinosearch.app.config import AppConfig

PAGE = Path(__file__).resolve().with_name("page.py")  # works from a clone and from a wheel
PACKAGE_ROOT = PAGE.parents[2]  # the folder holding dinosearch/ (site-packages in a wheel install)


def streamlit_argv(config: AppConfig) -> list[str]:
    """``python -m streamlit run <page.py> … -- <page flags>`` for ``config``.

    Server options are passed on the command line (a wheel has no ``.streamlit/config.toml`` beside
    the working folder): address, port, upload cap, no file watcher, no usage statistics.
    """
    argv = [sys.executable, "-m", "streamlit", "run", str(PAGE)]
    argv += ["--server.address", config.host, "--server.port", str(config.port)]
    argv += ["--server.headless", "true", "--server.maxUploadSize", str(MAX_UPLOAD_MB)]
    argv += ["--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"]
    argv += ["--client.toolbarMode", "minimal", "--", "--indexes", config.indexes]
    if config.reports:
        argv += ["--reports", config.reports]
    if config.show_columns:
        argv += ["--show-columns", ",".join(config.show_columns)]
    if config.viewer_url:
        argv += ["--viewer-url", config.viewer_url]
    if config.archive:
        argv += ["--archive", config.archive]
    return argv


def streamlit_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) with the package's folder first on PYTHONPATH.

    Streamlit puts the page's own folder on ``sys.path``, not the one holding ``dinosearch``.
    """
    out = dict(os.environ if env is None else env)
    parts = [str(PACKAGE_ROOT), *filter(None, out.get("PYTHONPATH", "").split(os.pathsep))]
    out["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    return out


def run_app(config: AppConfig) -> int:
    """Serve the page with ``config`` until stopped; Streamlit's exit status.

    A SIGTERM to this process stops Streamlit too (no server is left behind without its parent).
    """
    server = subprocess.Popen(streamlit_argv(config), env=streamlit_env())
    previous = signal.signal(signal.SIGTERM, lambda *_: server.terminate())
    try:
        return server.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
        if server.poll() is None:  # Ctrl+C or an error here: do not leave it running
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()


def launch_command(indexes: Path) -> str:
    """The shell command that opens the app on the index folders under ``indexes``, from here.

    ``python -m dinosearch app`` with this interpreter, so it works without the ``dinosearch``
    script on PATH and from a wheel as from a clone.
    """

    def short(p: str | Path) -> str:  # absolute, links kept (a venv's python is a link)
        p = os.path.abspath(p)
        rel = os.path.relpath(p)
        return p if rel.startswith("..") else rel

    argv = [short(sys.executable), "-m", "dinosearch", "app"]
    if os.path.abspath(indexes) != os.path.abspath("indexes"):
        argv += ["--indexes", short(indexes)]
    return shlex.join(argv)
