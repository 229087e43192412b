"""The shipped CXR sample (``dinosearch/sample``): complete, small, licence-cleared; no ../shared needed."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

SAMPLE = Path(__file__).resolve().parents[1] / "dinosearch" / "sample"
COLUMNS = {
    "file",
    "image_id",
    "label",
    "label_raw",
    "patient_id",
    "view",
    "source_repo",
    "source_commit",
    "source_path",
    "licence",
    "attribution_url",
}
LABELS = {"covid19", "normal", "pneumonia_bacterial", "pneumonia_viral"}
# source repository -> (licence, attribution URL): the only redistributable sources.
ALLOWED = {
    "armiro/COVID-CXNet": ("CC BY 4.0", "https://doi.org/10.6084/m9.figshare.12580328"),
    "ml-workgroup/covid-19-image-repository": (
        "CC BY 3.0",
        "https://doi.org/10.6084/m9.figshare.12275009",
    ),
    "lecuong1502/BTL_Machine_Learning": ("CC BY 4.0", "https://doi.org/10.17632/rscbjbr9sj"),
    "suyash091/covid-chestxray-dataset": ("CC BY 4.0", "https://doi.org/10.17632/rscbjbr9sj"),
}
MAX_FILMS = 400
MAX_BYTES = 8_000_000


@pytest.fixture(scope="module")
def manifest() -> pd.DataFrame:
    """The sample's manifest, every column as text."""
    return pd.read_csv(SAMPLE / "manifest.csv", dtype=str, keep_default_na=False)


def test_manifest_columns_and_size(manifest: pd.DataFrame) -> None:
    assert set(manifest.columns) >= COLUMNS
    assert 0 < len(manifest) <= MAX_FILMS
    assert manifest["image_id"].is_unique
    assert (manifest["file"] == "images/" + manifest["image_id"] + ".jpg").all()


def test_files_exist_grayscale_small(manifest: pd.DataFrame) -> None:
    total = 0
    for rel in manifest["file"]:
        path = SAMPLE / rel
        assert path.is_file(), path
        total += path.stat().st_size
        with Image.open(path) as im:
            assert im.mode == "L", (rel, im.mode)
            assert min(im.size) <= 256, (rel, im.size)
    assert total <= MAX_BYTES
    shipped = {p.name for p in (SAMPLE / "images").iterdir()}
    assert shipped == {Path(f).name for f in manifest["file"]}  # no stray, unlisted images


def test_only_allowed_sources_and_licences(manifest: pd.DataFrame) -> None:
    assert set(manifest["source_repo"]) <= set(ALLOWED)
    for col in ("licence", "attribution_url", "source_commit", "source_path", "patient_id"):
        assert (manifest[col].str.strip() != "").all(), col
    pairs = set(
        zip(manifest["source_repo"], manifest["licence"], manifest["attribution_url"], strict=True)
    )
    assert pairs <= {(src, *lic) for src, lic in ALLOWED.items()}


def test_labels(manifest: pd.DataFrame) -> None:
    assert set(manifest["label"]) <= LABELS
    assert set(manifest["label"]) == LABELS  # every label is represented
    covid_sources = set(manifest.loc[manifest["label"] == "covid19", "source_repo"])
    assert covid_sources == {"armiro/COVID-CXNet", "ml-workgroup/covid-19-image-repository"}


def test_no_patient_under_two_sources(manifest: pd.DataFrame) -> None:
    per_patient = manifest.groupby("patient_id")["source_repo"].nunique()
    assert (per_patient == 1).all(), per_patient[per_patient > 1].index.tolist()


def test_readme_present() -> None:
    text = (SAMPLE / "README.md").read_text(encoding="utf-8")
    assert "scripts/build_sample.py" in text
    assert "not for diagnosis" in text.lower()
    for url in {u for _, u in ALLOWED.values()}:
        assert url in text
