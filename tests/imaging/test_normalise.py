"""Normalisation: square, aspect kept, black padding, deterministic PNG bytes."""
from __future__ import annotations

import numpy as np
import pytest

from radsim.imaging.normalise import decode_png, encode_png, normalise_to_png, square_image, to_uint8


def test_square_keeps_aspect_and_pads_black():
    tall = np.ones((200, 100), dtype=np.float32)
    out = square_image(tall, 64)
    assert out.shape == (64, 64) and out.dtype == np.uint8
    cols = np.where(out.max(axis=0) > 0)[0]
    assert cols.min() == 16 and cols.max() == 47  # 32 px wide image centred in 64
    assert out[:, :16].max() == 0 and out[:, 48:].max() == 0
    wide = square_image(np.ones((50, 200), dtype=np.float32), 64)
    rows = np.where(wide.max(axis=1) > 0)[0]
    assert rows.min() == 24 and rows.max() == 39


def test_upscale_small_image():
    out = square_image(np.full((10, 10), 0.5, dtype=np.float32), 32)
    assert out.shape == (32, 32) and int(out[16, 16]) == 128


def test_png_is_deterministic_and_lossless():
    rng = np.random.default_rng(1)
    img = square_image(rng.random((300, 250), dtype=np.float32), 128)
    a, b = encode_png(img), encode_png(img.copy())
    assert a == b
    np.testing.assert_array_equal(decode_png(a), img)
    assert b"tEXt" not in a and b"tIME" not in a
    png, sha = normalise_to_png(rng.random((40, 40), dtype=np.float32), 32)
    import hashlib
    assert hashlib.sha256(png).hexdigest() == sha


def test_to_uint8_handles_nan_and_range():
    out = to_uint8(np.array([[np.nan, -1.0, 0.5, 2.0]], dtype=np.float32))
    assert out.tolist() == [[0, 0, 128, 255]]


def test_too_small_size_rejected():
    with pytest.raises(ValueError):
        square_image(np.zeros((10, 10), dtype=np.float32), 4)
