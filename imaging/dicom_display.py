"""DICOM stored values → a display image in [0, 1]: modality LUT, then VOI LUT, window or percentiles.

MONOCHROME1 (and PresentationLUTShape INVERSE) are inverted exactly once, so bright is always
dense. Used by radsim.imaging.decode once the header and pixel data have been checked.
"""
from __future__ import annotations

import struct
import zlib
from typing import Any

import numpy as np

# What decoders raise on corrupt or truncated data: such an image is quarantined (`unreadable_image`).
# Anything else (ImportError from a broken codec install, AttributeError or NameError from a bug)
# is not bad input and propagates, so it fails the run instead of quarantining every image.
CORRUPT_DATA = (ValueError, TypeError, KeyError, IndexError, OSError, EOFError, RuntimeError, OverflowError,
                struct.error, zlib.error, NotImplementedError)


def header_text(ds: Any, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip().upper()


def percentile_window(arr: np.ndarray, lo: float = 0.5, hi: float = 99.5) -> np.ndarray:
    """Contrast from the data itself when the header gives no window."""
    sample = arr[:: max(1, arr.shape[0] // 256), :: max(1, arr.shape[1] // 256)]
    p_lo, p_hi = np.percentile(sample, [lo, hi])
    if not np.isfinite(p_lo) or not np.isfinite(p_hi) or p_hi <= p_lo:
        p_lo, p_hi = float(np.min(arr)), float(np.max(arr))
    if p_hi <= p_lo:
        return np.zeros(arr.shape, dtype=np.float32)
    out = (arr.astype(np.float32) - np.float32(p_lo)) / np.float32(p_hi - p_lo)
    return np.clip(out, 0.0, 1.0, out=out)


def _first(value: Any) -> float:
    from pydicom.multival import MultiValue

    if isinstance(value, (list, tuple, MultiValue)):
        value = value[0]
    return float(value)


def _window(arr: np.ndarray, ds: Any) -> np.ndarray | None:
    """Apply Window Center/Width (PS3.3 C.11.2.1.2) straight to [0, 1]; None if unusable."""
    try:
        center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
    except (AttributeError, TypeError, ValueError, IndexError):
        return None
    func = header_text(ds, "VOILUTFunction") or "LINEAR"
    x = arr.astype(np.float32, copy=False)
    if func == "SIGMOID":
        if width <= 0:
            return None
        return (1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))).astype(np.float32)
    if func == "LINEAR_EXACT":
        if width <= 0:
            return None
        out = (x - np.float32(center)) / np.float32(width) + np.float32(0.5)
    else:  # LINEAR
        if width < 1:
            return None
        out = (x - np.float32(center - 0.5)) / np.float32(max(width - 1.0, 1e-6)) + np.float32(0.5)
    return np.clip(out, 0.0, 1.0, out=out)


def to_display(arr: np.ndarray, ds: Any) -> np.ndarray:
    """Modality LUT → VOI LUT or window (or percentiles) → [0, 1] → invert MONOCHROME1 once."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    photometric = header_text(ds, "PhotometricInterpretation")
    if int(ds.get("SamplesPerPixel") or 1) > 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        # Colour data is already display-ready: scale by its bit depth.
        bits = int(ds.get("BitsStored") or 8)
        return np.clip(arr.astype(np.float32) / float(2**bits - 1), 0.0, 1.0)
    try:
        x = apply_modality_lut(arr, ds)
    except CORRUPT_DATA:  # a broken modality LUT: fall back to stored values
        x = arr
    out: np.ndarray | None = None
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        try:
            lut_out = apply_voi_lut(x, ds, prefer_lut=True).astype(np.float32)
            lut = np.asarray(ds.VOILUTSequence[0].LUTData, dtype=np.float32)
            lo, hi = float(lut.min()), float(lut.max())
            if hi > lo:
                out = np.clip((lut_out - lo) / (hi - lo), 0.0, 1.0)
        except CORRUPT_DATA:  # fall through to the window or percentiles
            out = None
    if out is None and "WindowCenter" in ds and "WindowWidth" in ds:
        out = _window(x, ds)
    if out is None:
        out = percentile_window(np.asarray(x))
    # DX files with MONOCHROME1 also say PresentationLUTShape INVERSE: the same inversion,
    # so either one (or both) means "invert exactly once".
    if photometric == "MONOCHROME1" or header_text(ds, "PresentationLUTShape") == "INVERSE":
        out = 1.0 - out
    return np.ascontiguousarray(out, dtype=np.float32)
