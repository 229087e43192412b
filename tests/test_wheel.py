"""The wheel works on its own: built, installed into a fresh virtual environment in an empty folder
(no source tree beside it), it runs the demo on its bundled sample and serves the app."""

from __future__ import annotations

import os
import shutil
import signal
import site
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from helpers import TINY_CLI

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "dinosearch")  # what the wheel is built from
LEFT_BEHIND = ("__pycache__", "*.pyc", "*.egg-info")


def run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{argv[:4]} exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done.stdout


def build_wheel(tmp: Path) -> Path:
    """``pip wheel --no-deps --no-build-isolation`` of a copy of the sources (the repo stays clean)."""
    src = tmp / "src"
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns(*LEFT_BEHIND))
        elif (REPO / name).is_file():
            src.mkdir(exist_ok=True)
            shutil.copy(REPO / name, src / name)
    argv = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    run([*argv, "-w", str(tmp / "dist"), str(src)], cwd=tmp, env=dict(os.environ))
    (wheel,) = (tmp / "dist").glob("dinosearch-*.whl")
    shutil.rmtree(src)  # nothing of the source tree is left beside the installation
    return wheel


def fresh_venv(folder: Path, wheel: Path, env: dict[str, str]) -> Path:
    """A new venv seeing this one's third-party packages (torch cannot be reinstalled per test)
    through a .pth line — which does not run the .pth files there, so this checkout's editable
    dinosearch stays invisible — with ``wheel`` installed into it; → its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    purelib = run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], folder, env
    )
    (Path(purelib.strip()) / "_project_packages.pth").write_text(
        "\n".join(site.getsitepackages()) + "\n"
    )
    pip = [
        str(python),
        "-m",
        "pip",
        "install",
        "-q",
        "--no-deps",
        "--no-index",
        "--ignore-installed",
    ]
    run([*pip, str(wheel)], folder, env)
    return python


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
            return r.status == 200 and r.read().strip() == b"ok"
    except OSError:
        return False


def serve_until_healthy(app: subprocess.Popen, port: int, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert app.poll() is None, f"dinosearch app exited {app.returncode}:\n{log.read_text()}"
        if healthy(port):
            return
        time.sleep(0.3)
    raise AssertionError(f"no answer on port {port} in {timeout:.0f} s:\n{log.read_text()}")


def test_wheel_installs_runs_the_demo_and_serves_the_app(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    wheel = build_wheel(tmp_path)
    python = fresh_venv(tmp_path / "venv", wheel, env)
    work = tmp_path / "work"
    work.mkdir()
    where = run([str(python), "-c", "import dinosearch; print(dinosearch.__file__)"], work, env)
    assert Path(where.strip()).is_relative_to(tmp_path / "venv"), where  # only from the wheel
    cli = str(tmp_path / "venv" / "bin" / "dinosearch")
    demo = [cli, "demo", *TINY_CLI, "--epochs", "2", "--views", "1", "--train-images", "60"]
    out = run([*demo, "--bootstrap", "20", "--workers", "0", "--no-progress"], work, env)
    assert "open the app on them" in out and (work / "indexes" / "sample-adapted").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dist", "venv", "work"]
    port, log = free_port(), tmp_path / "app.log"
    with open(log, "w") as sink:
        app = subprocess.Popen(
            [cli, "app", "--indexes", "indexes", "--port", str(port)],
            cwd=work, env=env, stdout=sink, stderr=sink, start_new_session=True,
        )  # fmt: skip
    try:
        serve_until_healthy(app, port, log)
    finally:
        app.send_signal(signal.SIGTERM)  # by PID; `dinosearch app` stops its Streamlit with it
        try:
            app.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(app.pid, signal.SIGKILL)
            app.wait(timeout=5)
    assert not healthy(port), "Streamlit outlived `dinosearch app`"
