"""The chest X-ray sample shipped inside the package: 320 CC BY films (see sample/README.md)."""

from __future__ import annotations

from pathlib import Path

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample"


def sample_manifest() -> Path:
    """The bundled sample's manifest.csv (file, label, patient_id, view, source_repo, licence, …)."""
    manifest = SAMPLE_DIR / "manifest.csv"
    if not manifest.is_file():
        raise FileNotFoundError(
            f"the bundled chest X-ray sample is missing ({manifest}); reinstall dinosearch with its "
            "package data, or pass --images DIR_OR_MANIFEST"
        )
    return manifest
