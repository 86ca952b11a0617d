"""Write a synthetic radiograph as a DX DICOM file the way real DX files look.

The stored values are the display image scaled to BitsStored, inverted for MONOCHROME1
(which also carries PresentationLUTShape INVERSE, the same inversion described twice, as in
real DX files). Rescale is identity and the window covers the stored range, so a reader
that applies the modality LUT, then the window, then inverts MONOCHROME1 once, gets the
intended image back (up to quantisation). UIDs are derived from the seed, so reruns are
byte-identical.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    generate_uid,
)

from .plan import DicomVariant, ExamSpec

_TS = {"rle": RLELossless, "j2k": JPEG2000Lossless}


def stored_pixels(img: np.ndarray, variant: DicomVariant) -> np.ndarray:
    """Display image in [0, 1] -> the uint16 values stored in PixelData."""
    top = (1 << variant.bits_stored) - 1
    v = np.rint(np.clip(img, 0.0, 1.0) * top).astype(np.uint16)
    return (top - v).astype(np.uint16) if variant.photometric == "MONOCHROME1" else v


def uid_for(spec: ExamSpec, what: str, image_index: int = 0) -> str:
    return str(generate_uid(entropy_srcs=["radsim-synthetic", str(spec.seed), spec.exam_id, what, str(image_index)]))


def build_dataset(img: np.ndarray, spec: ExamSpec, image_index: int, *, modality: str = "DX",
                  body_part: str = "CHEST", variant: DicomVariant | None = None) -> Dataset:
    variant = variant or spec.variant
    arr = stored_pixels(img, variant)
    view = spec.view_of(image_index)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = uid_for(spec, "sop", image_index)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = spec.study_date.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = (
        f"{8 + spec.index % 10:02d}{(spec.index * 7) % 60:02d}{(spec.index * 13) % 60:02d}"
    )
    ds.AccessionNumber = spec.exam_id
    ds.Modality = modality
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = "RADSIM SYNTHETIC"
    ds.InstitutionName = spec.institution
    ds.ReferringPhysicianName = spec.referrer
    ds.StudyDescription = "XR CHEST" if body_part == "CHEST" else f"XR {body_part}"
    ds.SeriesDescription = f"{body_part} {view}"
    ds.PatientName = spec.patient_name
    ds.PatientID = spec.patient_id
    ds.PatientBirthDate = spec.birth_date.strftime("%Y%m%d")
    ds.PatientSex = spec.patient_sex
    ds.BodyPartExamined = body_part
    ds.ViewPosition = view
    ds.PatientOrientation = ["A", "F"] if view == "LATERAL" else (["L", "F"] if view == "AP" else ["R", "F"])
    ds.BurnedInAnnotation = "NO"
    ds.StudyInstanceUID = uid_for(spec, "study")
    ds.SeriesInstanceUID = uid_for(spec, "series", image_index)
    ds.StudyID = spec.exam_id[-6:]
    ds.SeriesNumber = 1 + image_index
    ds.InstanceNumber = 1
    _pixel_module(ds, arr, variant)
    if variant.compression in _TS:
        ds.compress(_TS[variant.compression], arr, generate_instance_uid=False)
    else:
        ds.PixelData = arr.tobytes()
    return ds


def _pixel_module(ds: Dataset, arr: np.ndarray, variant: DicomVariant) -> None:
    """Image pixel, spacing, rescale and window attributes for the stored `arr`."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = variant.photometric
    ds.PresentationLUTShape = "INVERSE" if variant.photometric == "MONOCHROME1" else "IDENTITY"
    ds.Rows, ds.Columns = int(arr.shape[0]), int(arr.shape[1])
    spacing = f"{430.0 / arr.shape[0]:.4f}"
    ds.ImagerPixelSpacing = [spacing, spacing]
    ds.PixelSpacing = [spacing, spacing]
    ds.BitsAllocated = 16
    ds.BitsStored = variant.bits_stored
    ds.HighBit = variant.bits_stored - 1
    ds.PixelRepresentation = 0
    top = (1 << variant.bits_stored) - 1
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    ds.WindowCenter = f"{(top + 1) / 2:.1f}"
    ds.WindowWidth = f"{top + 1:d}"
    ds.VOILUTFunction = "LINEAR"


def write_dicom(path: str | Path, img: np.ndarray, spec: ExamSpec, image_index: int, **kwargs) -> Path:
    ds = build_dataset(img, spec, image_index, **kwargs)
    dcmwrite(path, ds, enforce_file_format=True)
    return Path(path)
