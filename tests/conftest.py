"""Shared fixtures: tiny synthetic images, a tiny seeded DINOv2, and the real CXR set when present."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    TINY,
    TINY_SIZE,
    clustered_vectors,
    demo_argv,
    save_untrained_adapter,
    write_features_folder,
)
from PIL import Image

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # tests run on CPU
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub from a test

CXR_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cxr"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """Print pytest-randomly's seed even under -q, so a failing order can be replayed."""
    seed = getattr(config.option, "randomly_seed", None)
    if isinstance(seed, int):
        terminalreporter.write_line(f"test order: replay with -p randomly --randomly-seed={seed}")


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
    from dinosearch.backbones import load_backbone

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
    """Real chest X-rays: the shared set where ../shared exists, else the sample the package ships.

    Either folder holds ``images/*.jpg`` and a manifest (``helpers.read_cxr_manifest``).
    """
    from dinosearch.inputs import SAMPLE_DIR

    return CXR_DIR if (CXR_DIR / "manifest.parquet").is_file() else SAMPLE_DIR


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory, image_folder: Path) -> Path:
    """`dinosearch demo` run once on the synthetic images (as a manifest with patient and source
    columns) with the tiny backbone; returns its root (runs/, indexes/t-raw, indexes/t-adapted, reports/t)."""
    import pandas as pd

    from dinosearch.cli import main

    root = tmp_path_factory.mktemp("demo")
    paths = sorted(str(p) for p in image_folder.rglob("*.*"))
    pd.DataFrame(
        {
            "path": paths,
            "label": [p.split("/")[-2] for p in paths],
            "patient_id": [f"p{i // 2}" for i in range(len(paths))],
            "source_repo": [f"s{i % 2}" for i in range(len(paths))],
        }
    ).to_csv(root / "images.csv", index=False)
    assert main(demo_argv(root)) == 0
    return root


@pytest.fixture(scope="session")
def app_root(tmp_path_factory: pytest.TempPathFactory, image_folder: Path, tiny_backbone) -> Path:
    """A demo pair for the app: ``indexes/demo-raw``, ``indexes/demo-adapted`` (untrained adapter)
    of ``image_folder`` with patient_id and view columns (two films per patient), and an eval
    report under ``reports/demo``."""
    import pandas as pd
    import torch

    from dinosearch.evaluate.indexes import evaluate_indexes
    from dinosearch.features.folder import embed_to_folder
    from dinosearch.index import build_index
    from dinosearch.inputs.records import load_records

    root = tmp_path_factory.mktemp("app")
    files = sorted(p for p in image_folder.rglob("*") if p.is_file())
    manifest = pd.DataFrame(
        {
            "path": [str(p) for p in files],
            "label": [p.parent.name for p in files],
            "patient_id": [f"P{i // 2:02d}" for i in range(len(files))],
            "view": ["PA" if i % 3 else "AP" for i in range(len(files))],
        }
    )
    manifest.to_csv(root / "manifest.csv", index=False)
    records, _ = load_records(root / "manifest.csv")
    features = root / "features"
    embed_to_folder(records, tiny_backbone, features, batch_size=8, num_workers=0, progress=False)
    torch.manual_seed(0)  # the untrained adapter's weights
    save_untrained_adapter(root / "adapter", tiny_backbone)
    build_index(features, root / "indexes" / "demo-raw")
    build_index(features, root / "indexes" / "demo-adapted", adapter_dir=root / "adapter")
    evaluate_indexes(
        root / "indexes" / "demo-raw",
        root / "indexes" / "demo-adapted",
        root / "reports" / "demo",
        ks=[1, 5],
        n_boot=20,
    )
    return root


@pytest.fixture(scope="session")
def tiny_features(
    image_folder: Path, tiny_backbone, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The dozen synthetic images embedded by the tiny backbone, with group/view columns added."""
    import pandas as pd

    from dinosearch.features.folder import embed_to_folder
    from dinosearch.inputs.records import load_records

    records, _ = load_records(image_folder)
    records["patient_id"] = [f"p{i // 2}" for i in range(len(records))]  # two images per patient
    records["view"] = ["PA" if i % 3 else "AP" for i in range(len(records))]
    records["age"] = np.arange(len(records)) + 40
    out = tmp_path_factory.mktemp("features") / "tiny"
    embed_to_folder(pd.DataFrame(records), tiny_backbone, out, num_workers=0, progress=False)
    return out


@pytest.fixture(scope="session")
def synthetic_features(tiny_backbone, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 seeded 32-d features claiming the tiny backbone, with label/view/patient metadata."""
    n = 300
    rng = np.random.default_rng(1)
    meta = {
        "id": [f"img{i:04d}" for i in range(n)],
        "path": [f"/nowhere/img{i:04d}.png" for i in range(n)],
        "label": rng.choice(["normal", "effusion", "pneumonia"], n),
        "view": rng.choice(["PA", "AP", "LL"], n, p=[0.6, 0.35, 0.05]),
        "patient_id": [f"p{i // 3}" for i in range(n)],
    }
    feats = clustered_vectors(n, 32, clusters=10, seed=1) * 3.0
    return write_features_folder(
        tmp_path_factory.mktemp("synthetic") / "f", feats, meta, tiny_backbone.info()
    )


@pytest.fixture(scope="session")
def reliability_folders(tmp_path_factory: pytest.TempPathFactory, tiny_backbone) -> Path:
    """features/, adapter/, raw/ and adapted/ indexes of 20 seeded vectors, and a query image:
    the reliability tests break copies of them."""
    from dinosearch.index import build_index

    root = tmp_path_factory.mktemp("reliability")
    rng = np.random.default_rng(0)
    meta = {"id": [f"i{j}" for j in range(20)], "path": [f"/x/{j}.png" for j in range(20)]}
    write_features_folder(root / "features", rng.normal(size=(20, 32)), meta, tiny_backbone.info())
    save_untrained_adapter(root / "adapter", tiny_backbone)
    build_index(root / "features", root / "raw")
    build_index(root / "features", root / "adapted", adapter_dir=root / "adapter")
    Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).save(root / "query.png")
    return root


@pytest.fixture(scope="session")
def archive(tmp_path_factory: pytest.TempPathFactory):
    """A real Orthanc (DICOMweb plugin, 127.0.0.1, free port, temp storage) holding 40 sample films;
    yields (server, DICOM files on disk in the archive's order). Skips only where Orthanc is absent."""
    from archive_films import sample_rows, write_films
    from orthanc import Orthanc, available

    missing = available()
    if missing:
        pytest.skip(missing)
    root = tmp_path_factory.mktemp("archive")
    films = write_films(sample_rows(40), root / "films")
    server = Orthanc(root / "orthanc").start()
    try:
        server.store(films)
        yield server, films
    finally:
        server.stop()
