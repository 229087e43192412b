"""Shared fixtures: tiny synthetic images, a tiny seeded DINOv2, and the real CXR set when present."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # tests run on CPU
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub from a test

CXR_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cxr"
TINY = "dinov2_tiny_test"
TINY_SIZE = 56


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_backbone():
    """The DINOv2 ViT architecture at width 32, depth 2, seeded random weights (32-d features)."""
    from dinosearch.backbone import load_backbone

    return load_backbone(TINY, "random", image_size=TINY_SIZE, seed=0)


def _gradient(size: tuple[int, int], shade: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    base = np.linspace(0, 1, w)[None, :] * np.linspace(0.5, 1, h)[:, None] * 200 + shade * 0.2
    noise = rng.normal(0, 8, (h, w))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dozen labelled grayscale PNG/JPEG images in three sub-folders (label = folder name)."""
    root = tmp_path_factory.mktemp("images")
    for c, label in enumerate(["effusion", "normal", "pneumonia"]):
        (root / label).mkdir()
        for i in range(4):
            img = _gradient((64 + 8 * i, 72), shade=60 * c, seed=10 * c + i)
            img.save(root / label / f"{label}_{i}.{'png' if i % 2 else 'jpg'}")
    return root


@pytest.fixture(scope="session")
def cxr_dir() -> Path:
    """The shared real chest X-ray set; tests using it skip where ../shared is absent."""
    if not (CXR_DIR / "manifest.parquet").is_file():
        pytest.skip(f"real chest X-rays not found at {CXR_DIR}")
    return CXR_DIR


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory, image_folder: Path) -> Path:
    """`dinosearch demo` run once on the synthetic images (as a manifest with patient and source
    columns) with the tiny backbone; returns its root (runs/, indexes/t-raw, indexes/t-adapted, reports/t)."""
    import pandas as pd

    from dinosearch.cli import main

    root = tmp_path_factory.mktemp("demo")
    paths = sorted(str(p) for p in image_folder.rglob("*.*"))
    pd.DataFrame({
        "path": paths,
        "label": [p.split("/")[-2] for p in paths],
        "patient_id": [f"p{i // 2}" for i in range(len(paths))],
        "source_repo": [f"s{i % 2}" for i in range(len(paths))],
    }).to_csv(root / "images.csv", index=False)
    argv = ["demo", "--images", str(root / "images.csv"), "--root", str(root), "--name", "t",
            "--backbone", TINY, "--weights", "random", "--image-size", str(TINY_SIZE), "--views", "1",
            "--epochs", "2", "--k", "1,3", "--bootstrap", "50", "--no-progress", "--workers", "0"]
    assert main(argv) == 0
    return root
