"""Inputs stage: one image file → PIL (PNG/JPEG/TIFF/DICOM); folders and manifests → records."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dinosearch.core.lazy import lazy_exports

# public name → the module that defines it (imported on first use: `--help` stays light)
_API = {
    "ImageReadError": "dinosearch.inputs.errors",
    "read_image": "dinosearch.inputs.images",
    "load_records": "dinosearch.inputs.records",
    "records_fingerprint": "dinosearch.inputs.records",
    "SAMPLE_DIR": "dinosearch.inputs.sample",
    "sample_manifest": "dinosearch.inputs.sample",
}
__all__ = [
    "SAMPLE_DIR",
    "ImageReadError",
    "load_records",
    "read_image",
    "records_fingerprint",
    "sample_manifest",
]

if TYPE_CHECKING:
    from dinosearch.inputs.errors import ImageReadError
    from dinosearch.inputs.images import read_image
    from dinosearch.inputs.records import load_records, records_fingerprint
    from dinosearch.inputs.sample import SAMPLE_DIR, sample_manifest

__getattr__ = lazy_exports(__name__, _API, globals())
