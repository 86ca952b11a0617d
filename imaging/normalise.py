"""Decoded image → the stored sample: square 8-bit grayscale PNG, aspect kept, black padding.

Determinism matters (byte-identical reruns): a fixed PIL filter, no PNG metadata, and a
fixed compression level, so the same input always gives the same bytes and sha256.
"""
from __future__ import annotations

import hashlib
import io

import numpy as np
from PIL import Image

from .config import DEFAULT_IMAGE_SIZE, MIN_IMAGE_SIZE
from .reduced_decode import Geometry

PNG_COMPRESS_LEVEL = 1  # zlib fast mode: ~3x faster than 6 for ~15% larger files; encode is the CPU bottleneck
_RESAMPLE = Image.Resampling.BILINEAR  # PIL's bilinear is antialiased when shrinking


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """[0, 1] floats → uint8 with round-half-up (NaN → 0)."""
    x = np.nan_to_num(np.asarray(pixels, dtype=np.float32), nan=0.0)
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def square_image(pixels: np.ndarray, size: int = DEFAULT_IMAGE_SIZE, geometry: Geometry | None = None) -> np.ndarray:
    """Resize so the long side is `size`, then pad to size × size (centred, black).

    `geometry` places an image decoded at reduced resolution in the full one: the output then
    has the size and alignment a full decode would give (the resize reads exactly the full
    image's extent, one edge row and column past the decoded pixels at most).
    """
    if size < MIN_IMAGE_SIZE:
        raise ValueError(f"image size must be at least {MIN_IMAGE_SIZE}, got {size}")
    img = pixels if pixels.dtype == np.uint8 else to_uint8(pixels)
    h, w = geometry.full_shape if geometry is not None else img.shape
    scale = size / max(h, w)
    nw, nh = max(1, min(size, round(w * scale))), max(1, min(size, round(h * scale)))
    if geometry is not None:
        padded = np.pad(img, ((0, 1), (0, 1)), mode="edge")
        img = np.asarray(Image.fromarray(padded, mode="L").resize((nw, nh), _RESAMPLE, box=geometry.extent))
    elif (nw, nh) != (w, h):
        img = np.asarray(Image.fromarray(img, mode="L").resize((nw, nh), _RESAMPLE))
    out = np.zeros((size, size), dtype=np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top:top + nh, left:left + nw] = img
    return out


def encode_png(img: np.ndarray, compress_level: int = PNG_COMPRESS_LEVEL) -> bytes:
    """Deterministic PNG bytes: mode L, no text/time chunks, fixed zlib level."""
    if img.dtype != np.uint8 or img.ndim != 2:
        raise ValueError("encode_png expects a 2-D uint8 array")
    buf = io.BytesIO()
    Image.fromarray(img, mode="L").save(buf, format="PNG", compress_level=compress_level, optimize=False)
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes → 2-D uint8 array (the inverse of `encode_png`)."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("L"))


def normalise_to_png(pixels: np.ndarray, size: int = DEFAULT_IMAGE_SIZE,
                     geometry: Geometry | None = None) -> tuple[bytes, str]:
    """A decoded image → (PNG bytes, sha256 hex of those bytes)."""
    png = encode_png(square_image(pixels, size, geometry))
    return png, hashlib.sha256(png).hexdigest()
