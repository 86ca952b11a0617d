"""Reduced-resolution decode: level choice, exact stored values, geometry, and bad input as before."""
from __future__ import annotations

import io
import logging

import numpy as np
import pytest

from radsim.imaging import decode as dec
from radsim.imaging import reduced_decode as red
from radsim.imaging.decode import ImageRejected, read_image
from radsim.imaging.fidelity import rank_correlation
from radsim.imaging.normalise import square_image
from radsim.imaging.worker import DecodeOptions, WorkItem, decode_item


def _lungs_darker_than_spine(p: np.ndarray) -> bool:
    h, w = p.shape
    band = slice(h // 3, 2 * h // 3)
    lungs = (p[band, w // 8:w // 3].mean() + p[band, 2 * w // 3:7 * w // 8].mean()) / 2
    return bool(lungs + 0.1 < p[band, 9 * w // 20:11 * w // 20].mean())


def _smooth_phantom(h: int, w: int) -> np.ndarray:
    """Dark lungs, bright spine and a gentle gradient, without pixel noise: a resized film's ranks are
    then set by anatomy, as in a real radiograph, not by white noise that each filter averages differently."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    d = 0.45 + 0.15 * np.sin(3 * xx + 1) * np.cos(2 * yy)
    for cx in (0.28, 0.72):
        d -= 0.3 * np.exp(-(((xx * max(h, w) / w - cx) / 0.15) ** 2 + ((yy * max(h, w) / h - 0.5) / 0.25) ** 2))
    d[:, int(0.44 * w):int(0.56 * w)] += 0.35
    return np.clip(d, 0, 1).astype(np.float32)


def _j2k_dicom(make_dicom, path, *, h=601, w=517, signed=False, photometric="MONOCHROME2"):
    """A 12-bit JPEG 2000 lossless chest phantom with odd sides (Pillow's own `reduce` fails on them)."""
    from pydicom import dcmread
    from pydicom.uid import JPEG2000Lossless

    ds = dcmread(make_dicom(path, density=_smooth_phantom(h, w), photometric=photometric, window=(2048, 4096)))
    arr = ds.pixel_array
    if signed:
        arr = arr.astype(np.int16) - 2048
        ds.PixelRepresentation, ds.WindowCenter = 1, 0
        ds.PixelData = arr.tobytes()
    ds.compress(JPEG2000Lossless, arr)
    ds.save_as(path, enforce_file_format=True)
    return path


def _jpeg_dicom(make_dicom, path, *, h=1001, w=777, photometric="MONOCHROME1"):
    """An 8-bit JPEG Baseline chest phantom (Pillow encodes it; pydicom has no JPEG encoder)."""
    from PIL import Image
    from pydicom import dcmread
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    ds = dcmread(make_dicom(path, density=_smooth_phantom(h, w), bits_stored=8, photometric=photometric))
    buf = io.BytesIO()
    Image.fromarray(ds.pixel_array.astype(np.uint8), mode="L").save(buf, format="JPEG", quality=92)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


def _stored(img, size: int) -> np.ndarray:
    return square_image(img.pixels, size, img.geometry)


def _codestream(path) -> bytes:
    from pydicom import dcmread
    from pydicom.encaps import get_frame

    return get_frame(dcmread(path).PixelData, 0, number_of_frames=1)


@pytest.mark.parametrize("long_side,size,most,expected", [
    (2128, 256, 5, 3), (2128, 128, 5, 4), (2128, 256, 2, 2), (512, 256, 5, 1), (511, 256, 5, 0), (200, 256, 5, 0),
])
def test_coarsest_level_keeps_long_side_at_least_output(long_side, size, most, expected):
    assert red.coarsest_halvings(long_side, size, most) == expected
    assert long_side >> expected >= size or expected == 0


@pytest.mark.parametrize("name", ["966_fixed.dcm", "RG1_J2KI.dcm"])
def test_real_j2k_level_zero_matches_pydicom_bit_for_bit(shared_dicom_dir, name):
    from pydicom import dcmread

    ds = dcmread(shared_dicom_dir / name)
    header = red.parse_j2k_header(_codestream(shared_dicom_dir / name))
    assert (header.height, header.width) == (ds.Rows, ds.Columns)
    assert header.precision == ds.BitsStored and header.levels == 5 and not header.signed
    np.testing.assert_array_equal(red.decode_j2k(_codestream(shared_dicom_dir / name), header, 0), ds.pixel_array)


def test_real_chest_reduced_keeps_monochrome1_inverted_once(shared_dicom_dir):
    img = read_image(shared_dicom_dir / "966_fixed.dcm", output_size=256)
    assert img.reduction == 8 and img.shape == (266, 250) and img.geometry.full_shape == (2128, 2000)
    assert img.photometric == "MONOCHROME1" and _lungs_darker_than_spine(img.pixels)


@pytest.mark.parametrize("signed", [False, True])
def test_odd_sized_j2k_decodes_at_every_level(tmp_path, make_dicom, signed):
    from pydicom import dcmread

    path = _j2k_dicom(make_dicom, tmp_path / "j.dcm", signed=signed)
    cs, full = _codestream(path), dcmread(path).pixel_array
    header = red.parse_j2k_header(cs)
    assert header.signed is signed
    np.testing.assert_array_equal(red.decode_j2k(cs, header, 0), full)  # sign and shift undone exactly
    for levels in range(1, header.levels + 1):
        step = 1 << levels
        assert red.decode_j2k(cs, header, levels).shape == (-(-601 // step), -(-517 // step))
    reduced, whole = read_image(path, output_size=128), read_image(path)
    assert reduced.reduction == 4 and whole.reduction == 1
    assert rank_correlation(_stored(reduced, 128), _stored(whole, 128)) > 0.98


def test_8bit_jpeg_uses_dct_scaling(tmp_path, make_dicom):
    path = _jpeg_dicom(make_dicom, tmp_path / "b.dcm")
    reduced, whole = read_image(path, output_size=256), read_image(path)
    assert reduced.reduction == 2 and reduced.shape == (501, 389)  # 1001 // 4 < 256, so 1/2
    assert _lungs_darker_than_spine(reduced.pixels)
    assert rank_correlation(_stored(reduced, 256), _stored(whole, 256)) > 0.98
    assert _stored(reduced, 256).shape == (256, 256)


def test_no_reduction_when_no_level_fits(tmp_path, make_dicom):
    path = _j2k_dicom(make_dicom, tmp_path / "s.dcm", h=300, w=200)
    assert read_image(path, output_size=256).reduction == 1
    assert read_image(path, output_size=150).reduction == 2


def test_multi_frame_decodes_first_frame_in_full(tmp_path, make_dicom):
    from pydicom import dcmread
    from pydicom.encaps import encapsulate

    path = _j2k_dicom(make_dicom, tmp_path / "m.dcm")
    cs = _codestream(path)
    ds = dcmread(path)
    ds.NumberOfFrames, ds.PixelData = 2, encapsulate([cs, cs])
    ds.save_as(path, enforce_file_format=True)
    img = read_image(path, output_size=128)
    assert img.reduction == 1 and img.shape == (601, 517)


def test_codestream_size_disagreeing_with_header_is_refused_undecoded(tmp_path, make_dicom, monkeypatch):
    from pydicom import dcmread

    path = _j2k_dicom(make_dicom, tmp_path / "x.dcm")
    ds = dcmread(path)
    ds.Rows = 600
    ds.save_as(path, enforce_file_format=True)
    monkeypatch.setattr(red, "decode_j2k", lambda *a: pytest.fail("decoded a codestream whose size was wrong"))
    with pytest.raises(ImageRejected) as err:
        read_image(path, output_size=128)
    assert err.value.reason_code == "unreadable_image" and "601x517" in err.value.message


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_codestream_gets_the_full_decodes_verdict(tmp_path, make_dicom, damage):
    from pydicom import dcmread
    from pydicom.encaps import encapsulate

    path = _j2k_dicom(make_dicom, tmp_path / "c.dcm")
    cs = _codestream(path)
    bad = cs[: len(cs) // 3] if damage == "truncated" else cs[:2] + bytes(range(256)) * 8
    ds = dcmread(path)
    ds.PixelData = encapsulate([bad + b"\x00" * (len(bad) % 2)])
    ds.save_as(path, enforce_file_format=True)
    verdicts = []
    for size in (None, 128):
        with pytest.raises(ImageRejected) as err:
            read_image(path, output_size=size)
        verdicts.append(err.value.reason_code)
    assert verdicts == ["unreadable_image", "unreadable_image"]


def test_reduced_decoder_failure_falls_back_to_full_decode(tmp_path, make_dicom, monkeypatch, caplog):
    path = _j2k_dicom(make_dicom, tmp_path / "f.dcm")

    def broken(*args):
        raise OSError("broken data stream when reading image file")

    monkeypatch.setattr(red, "decode_j2k", broken)
    monkeypatch.setattr(dec, "_fallback_warned", False)
    with caplog.at_level(logging.WARNING, logger="radsim.imaging.decode"):
        img = read_image(path, output_size=128)
        read_image(path, output_size=128)
    assert img.reduction == 1
    np.testing.assert_array_equal(img.pixels, read_image(path).pixels)
    warned = [r.getMessage() for r in caplog.records if "reduced-resolution decode failed" in r.getMessage()]
    assert len(warned) == 1 and "broken data stream" in warned[0]  # said once, not per image


def test_a_bug_in_the_reduced_path_fails_the_item_not_quarantines_it(tmp_path, make_dicom, monkeypatch):
    path = _j2k_dicom(make_dicom, tmp_path / "g.dcm")

    def bug(*args):
        raise AttributeError("'NoneType' object has no attribute 'tile'")

    monkeypatch.setattr(red, "decode_j2k", bug)
    result = decode_item(WorkItem(0, str(path)), DecodeOptions(image_size=128))
    assert result.status == "failed" and "AttributeError" in result.message


def test_shard_worker_stores_reduced_image_unless_told_not_to(tmp_path, make_dicom):
    from radsim.imaging.normalise import normalise_to_png

    path = _j2k_dicom(make_dicom, tmp_path / "w.dcm")
    fast = decode_item(WorkItem(0, str(path)), DecodeOptions(image_size=128))
    slow = decode_item(WorkItem(0, str(path)), DecodeOptions(image_size=128, reduced_decode=False))
    assert fast.status == slow.status == "ok"
    reduced = read_image(path, output_size=128)
    assert fast.png == normalise_to_png(reduced.pixels, 128, reduced.geometry)[0]
    assert slow.png == normalise_to_png(read_image(path).pixels, 128)[0] != fast.png
