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


def test_reduced_image_keeps_the_full_images_geometry():
    """1841 × 1955 decoded at 1/8 is 231 × 245 (ceil): the stored image must still be placed as the full one."""
    from radsim.imaging.reduced_decode import dct_geometry, wavelet_geometry

    full = square_image(np.ones((1955, 1841), dtype=np.float32), 64)
    rows, cols = np.where(full.max(axis=1) > 0)[0], np.where(full.max(axis=0) > 0)[0]
    for geometry in (wavelet_geometry(1955, 1841, 3), dct_geometry(1955, 1841, 8)):
        reduced = square_image(np.ones((245, 231), dtype=np.float32), 64, geometry)
        assert reduced.shape == (64, 64)
        np.testing.assert_array_equal(np.where(reduced.max(axis=1) > 0)[0], rows)
        np.testing.assert_array_equal(np.where(reduced.max(axis=0) > 0)[0], cols)
    # A vertical edge at full column 921, sampled as JPEG 2000 level 3 does (sample i sits on column 8 i):
    # placed by its wavelet grid it lands where the full image has it; on the DCT grid it is ~1/8 px off.
    full_edge = np.tile((np.arange(1841) >= 921).astype(np.float32), (1955, 1))
    at = np.arange(231) * 8
    coarse_edge = np.tile(np.where(at > 921, 1.0, np.where(at == 920, 0.5, 0.0)).astype(np.float32), (245, 1))
    b = square_image(full_edge, 64).astype(int)
    assert np.abs(square_image(coarse_edge, 64, wavelet_geometry(1955, 1841, 3)).astype(int) - b).max() <= 4
    assert np.abs(square_image(coarse_edge, 64, dct_geometry(1955, 1841, 8)).astype(int) - b).max() >= 10
