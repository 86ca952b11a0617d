"""Fixture factories for tiny radiographs: DICOM (pydicom), PNG and JPEG (PIL), and bad files."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

FAKE_PHI = {
    "PatientName": "Doe^Janet^Quintessa",
    "PatientID": "PID-77341",
    "AccessionNumber": "ACC99812345",
    "PatientBirthDate": "19370214",
    "InstitutionName": "St Elsewhere Infirmary",
}


def chest_phantom(h: int = 96, w: int = 80, seed: int = 0) -> np.ndarray:
    """Density in [0, 1] (bright = dense): dark lungs either side of a bright central column."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    d = np.full((h, w), 0.55, dtype=np.float32)
    for cx in (0.28 * w, 0.72 * w):
        lung = ((xx - cx) / (0.17 * w)) ** 2 + ((yy - 0.48 * h) / (0.3 * h)) ** 2 < 1
        d[lung] = 0.15
    d[:, int(0.44 * w):int(0.56 * w)] = 0.9  # spine / mediastinum
    d += rng.normal(0, 0.02, d.shape).astype(np.float32)
    return np.clip(d, 0, 1)


def _make_dicom(path: Path, *, density: np.ndarray | None = None, photometric: str = "MONOCHROME2",
                bits_stored: int = 12, modality: str = "DX", body_part: str | None = "CHEST",
                view: str | None = "PA", burned_in: str | None = None, presentation_shape: str | None = None,
                window: tuple[float, float] | None = None, rows: int | None = None, columns: int | None = None,
                pixel_data: bool = True, transfer_syntax: str | None = None, rescale: tuple[float, float] | None = None,
                phi: dict | None = None, seed: int = 0) -> Path:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, RLELossless, generate_uid

    density = chest_phantom(seed=seed) if density is None else density
    h, w = density.shape
    top = 2**bits_stored - 1
    shown = 1.0 - density if photometric == "MONOCHROME1" else density
    if bits_stored <= 8:
        stored = np.round(shown * top).astype(np.uint8)
        alloc = 8
    else:
        stored = np.round(shown * top).astype(np.uint16)
        alloc = 16
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.1.1")
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[str(path)])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    for k, v in {**FAKE_PHI, **(phi or {})}.items():
        setattr(ds, k, v)
    ds.Modality = modality
    if body_part is not None:
        ds.BodyPartExamined = body_part
    if view is not None:
        ds.ViewPosition = view
    if burned_in is not None:
        ds.BurnedInAnnotation = burned_in
    if presentation_shape is not None:
        ds.PresentationLUTShape = presentation_shape
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    ds.Rows, ds.Columns = rows or h, columns or w
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = alloc, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 0
    if pixel_data:
        ds.PixelData = stored.tobytes()
    if transfer_syntax == "rle":
        ds.compress(RLELossless)
    elif transfer_syntax is not None:
        ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
        from pydicom.encaps import encapsulate
        ds.PixelData = encapsulate([b"\x00" * 64])
        ds["PixelData"].VR = "OB"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _make_png(path: Path, *, density: np.ndarray | None = None, mode: str = "L") -> Path:
    from PIL import Image

    density = chest_phantom() if density is None else density
    if mode == "I;16":
        im = Image.fromarray(np.round(density * 65535).astype(np.uint16))
    else:
        im = Image.fromarray(np.round(density * 255).astype(np.uint8), mode="L")
        if mode != "L":
            im = im.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, format="JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG")
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _make_png_bomb(path: Path, side: int = 100_000) -> Path:
    """A valid-looking PNG header claiming side × side pixels with a tiny payload."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        + _png_chunk(b"IEND", b"")
    )
    path.write_bytes(data)
    return path


@pytest.fixture(scope="session")
def make_dicom():
    return _make_dicom


@pytest.fixture
def make_png():
    return _make_png


@pytest.fixture
def make_png_bomb():
    return _make_png_bomb


@pytest.fixture
def phantom():
    return chest_phantom


@pytest.fixture
def fake_phi():
    return dict(FAKE_PHI)
