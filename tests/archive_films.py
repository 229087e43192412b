"""The bundled sample written as DICOM films: consistent patient/study/series UIDs, views, sex, age.

UIDs are derived from the manifest's patient id and image id (``pydicom.uid.generate_uid`` with
entropy sources), so the same film always gets the same SOP Instance UID. Used by the Orthanc
tests and ``scripts/bench_pacs.py``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from pydicom import uid as U
from pydicom.dataset import Dataset, FileMetaDataset

from dinosearch.inputs import SAMPLE_DIR

VIEWS = ("PA", "AP")


def _uid(*parts: str) -> str:
    return str(U.generate_uid(entropy_srcs=[*parts, "dinosearch-test"]))


def sample_rows(n: int, start: int = 0) -> pd.DataFrame:
    """Rows ``start`` … ``start + n - 1`` of the bundled sample manifest (file, image_id, patient_id…)."""
    table = pd.read_csv(SAMPLE_DIR / "manifest.csv")
    return table.iloc[start : start + n].reset_index(drop=True)


def film(row: pd.Series, index: int) -> Dataset:
    """One sample image as an uncompressed CR/DX DICOM dataset with its patient's UIDs."""
    pixels = np.asarray(Image.open(SAMPLE_DIR / str(row["file"])).convert("L"))
    patient = str(row["patient_id"])
    digest = int(hashlib.sha256(patient.encode()).hexdigest()[:8], 16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = U.DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = _uid("sop", str(row["image_id"]))
    meta.TransferSyntaxUID = U.ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = _uid("study", patient)
    ds.SeriesInstanceUID = _uid("series", patient)
    ds.PatientID = patient
    ds.PatientName = f"Test^{digest % 1000:03d}"
    ds.PatientSex = "FM"[digest % 2]
    ds.PatientAge = f"{20 + digest % 60:03d}Y"
    ds.StudyDate = f"2024{1 + digest % 12:02d}{1 + digest % 28:02d}"
    ds.StudyID = "1"
    ds.AccessionNumber = f"A{digest % 100000:05d}"
    ds.Modality = "DX" if digest % 2 else "CR"  # a series attribute: one per patient
    ds.ViewPosition = VIEWS[index % 2]
    ds.BodyPartExamined = "CHEST"
    ds.ImageLaterality = "U"
    ds.SeriesNumber = 1
    ds.InstanceNumber = index + 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = pixels.tobytes()
    return ds


def write_films(rows: pd.DataFrame, folder: Path, start: int = 0) -> list[Path]:
    """Write each row as ``folder/<image_id>.dcm``; returns the paths in row order."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, row in rows.iterrows():
        path = folder / f"{row['image_id']}.dcm"
        film(row, start + int(i)).save_as(path, enforce_file_format=True)  # type: ignore[arg-type]
        paths.append(path)
    return paths
