"""Inputs stage: one image file → PIL (PNG/JPEG/TIFF/DICOM); folders and manifests → records."""

from dinosearch.inputs.errors import ImageReadError
from dinosearch.inputs.images import read_image
from dinosearch.inputs.records import load_records, records_fingerprint
from dinosearch.inputs.sample import SAMPLE_DIR, sample_manifest

__all__ = [
    "SAMPLE_DIR",
    "ImageReadError",
    "load_records",
    "read_image",
    "records_fingerprint",
    "sample_manifest",
]
