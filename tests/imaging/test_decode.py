"""Decoding: real chest DICOMs, display orientation, windowing, and every refusal reason."""
from __future__ import annotations

import numpy as np
import pytest

from radsim.imaging import decode as dec
from radsim.imaging.decode import ImageRejected, normalise_view, read_image

CHEST = ("RG1_J2KI.dcm", "RG1_JLSN.dcm", "966_fixed.dcm")
HIP = ("RG2_JPLL.dcm", "RG2_JPLY_fixed.dcm")


def lungs_vs_centre(p: np.ndarray) -> tuple[float, float]:
    """Mean of the lateral lung bands vs the central column (spine/mediastinum), mid-height."""
    h, w = p.shape
    band = slice(h // 3, 2 * h // 3)
    lungs = (p[band, w // 8:w // 3].mean() + p[band, 2 * w // 3:7 * w // 8].mean()) / 2
    centre = p[band, 9 * w // 20:11 * w // 20].mean()
    return float(lungs), float(centre)


@pytest.fixture(scope="module")
def real_chest(shared_dicom_dir):
    return {name: read_image(shared_dicom_dir / name) for name in CHEST}


@pytest.mark.parametrize("name", CHEST)
def test_real_chest_files_decode_in_display_orientation(real_chest, name):
    img = real_chest[name]
    assert img.source_format == "dicom" and img.photometric == "MONOCHROME1"
    assert img.pixels.dtype == np.float32 and img.pixels.ndim == 2
    assert 0.0 <= img.pixels.min() and img.pixels.max() <= 1.0
    assert img.view_position == "PA"
    lungs, centre = lungs_vs_centre(img.pixels)
    # MONOCHROME1 inverted exactly once: lungs dark, spine/mediastinum bright.
    assert lungs + 0.1 < centre, (lungs, centre)


def test_same_chest_two_codecs_agree(real_chest):
    a, b = real_chest["RG1_J2KI.dcm"].pixels, real_chest["RG1_JLSN.dcm"].pixels
    assert a.shape == b.shape
    assert float(np.abs(a - b).mean()) < 0.01


@pytest.mark.parametrize("name", HIP)
def test_hip_files_are_not_chest(shared_dicom_dir, name):
    with pytest.raises(ImageRejected) as err:
        read_image(shared_dicom_dir / name)
    assert err.value.reason_code == "not_chest"


def test_monochrome1_with_inverse_presentation_lut_inverts_once(tmp_path, make_dicom, phantom):
    d = phantom()
    m2 = read_image(make_dicom(tmp_path / "m2.dcm", density=d, photometric="MONOCHROME2", window=(2048, 4096)))
    m1 = read_image(make_dicom(tmp_path / "m1.dcm", density=d, photometric="MONOCHROME1",
                               presentation_shape="INVERSE", window=(2048, 4096)))
    np.testing.assert_allclose(m1.pixels, m2.pixels, atol=2e-3)
    lungs, centre = lungs_vs_centre(m1.pixels)
    assert lungs < centre


def test_window_is_applied(tmp_path, make_dicom, phantom):
    # A narrow window around the lungs saturates the spine to white and keeps lungs mid-grey.
    d = phantom()
    img = read_image(make_dicom(tmp_path / "w.dcm", density=d, window=(0.15 * 4095, 400)))
    lungs, centre = lungs_vs_centre(img.pixels)
    assert centre == pytest.approx(1.0)
    assert 0.2 < lungs < 0.8


def test_percentile_fallback_without_window(tmp_path, make_dicom, phantom):
    d = 0.4 + 0.1 * phantom()  # low contrast data, no window in the header
    img = read_image(make_dicom(tmp_path / "p.dcm", density=d))
    assert img.pixels.min() == pytest.approx(0.0) and img.pixels.max() == pytest.approx(1.0)


def test_modality_rescale_then_window(tmp_path, make_dicom, phantom):
    d = phantom()
    plain = read_image(make_dicom(tmp_path / "a.dcm", density=d, window=(2048, 4096)))
    # Stored values are the same; slope 2 intercept -100 moves them, and the window follows.
    scaled = read_image(make_dicom(tmp_path / "b.dcm", density=d, window=(2 * 2048 - 100, 2 * 4096), rescale=(2, -100)))
    np.testing.assert_allclose(plain.pixels, scaled.pixels, atol=2e-3)


@pytest.mark.parametrize("bits", [8, 10, 16])
def test_bit_depths(tmp_path, make_dicom, phantom, bits):
    img = read_image(make_dicom(tmp_path / f"b{bits}.dcm", density=phantom(), bits_stored=bits))
    assert img.bits == bits
    lungs, centre = lungs_vs_centre(img.pixels)
    assert lungs < centre


def test_rle_compressed(tmp_path, make_dicom, phantom):
    a = read_image(make_dicom(tmp_path / "n.dcm", density=phantom()))
    b = read_image(make_dicom(tmp_path / "r.dcm", density=phantom(), transfer_syntax="rle"))
    np.testing.assert_array_equal(a.pixels, b.pixels)


def test_png_and_jpeg_inputs(tmp_path, make_png, phantom):
    d = phantom()
    for name, mode in (("g.png", "L"), ("g16.png", "I;16"), ("rgb.png", "RGB"), ("g.jpg", "L"), ("rgb.jpg", "RGB")):
        img = read_image(make_png(tmp_path / name, density=d, mode=mode))
        assert img.source_format == ("jpeg" if name.endswith("jpg") else "png")
        assert img.view_position == "UNKNOWN"
        if name.endswith("jpg"):  # lossy: compare on average
            assert float(np.abs(img.pixels - d).mean()) < 0.02
        else:
            np.testing.assert_allclose(img.pixels, d, atol=0.01)


def _reason(path, **kw) -> str:
    with pytest.raises(ImageRejected) as err:
        read_image(path, **kw)
    return err.value.reason_code


def test_bad_inputs_have_reason_codes(tmp_path, make_dicom, make_png_bomb):
    good = make_dicom(tmp_path / "good.dcm").read_bytes()
    (tmp_path / "zero.dcm").write_bytes(b"")
    (tmp_path / "trunc.dcm").write_bytes(good[: len(good) - 2000])
    (tmp_path / "text.dcm").write_text("this is a report, not an image\n" * 20)
    (tmp_path / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50)
    (tmp_path / "adir.dcm").mkdir()
    cases = {
        "zero.dcm": "unreadable_image",
        "trunc.dcm": "unreadable_image",
        "garbage.png": "unreadable_image",
        "text.dcm": "not_dicom",
        "adir.dcm": "missing_file",
        "nowhere.dcm": "missing_file",
    }
    for name, code in cases.items():
        assert _reason(tmp_path / name) == code, name
    assert _reason(make_dicom(tmp_path / "ct.dcm", modality="CT")) == "not_radiograph"
    assert _reason(make_dicom(tmp_path / "mr.dcm", modality="MR")) == "not_radiograph"
    assert _reason(make_dicom(tmp_path / "rt.dcm", modality="RTSTRUCT", pixel_data=False)) == "not_radiograph"
    assert _reason(make_dicom(tmp_path / "nopix.dcm", pixel_data=False)) == "no_pixel_data"
    assert _reason(make_dicom(tmp_path / "knee.dcm", body_part="KNEE")) == "not_chest"
    assert _reason(make_dicom(tmp_path / "burn.dcm", burned_in="YES")) == "burned_in_annotation"
    assert _reason(make_dicom(tmp_path / "bomb.dcm", rows=60000, columns=60000)) == "implausible_size"
    assert _reason(make_png_bomb(tmp_path / "bomb.png")) == "implausible_size"
    assert _reason(make_dicom(tmp_path / "big.dcm"), max_pixels=1000) == "implausible_size"


def test_body_part_absent_or_thorax_is_accepted(tmp_path, make_dicom):
    read_image(make_dicom(tmp_path / "none.dcm", body_part=None))
    read_image(make_dicom(tmp_path / "thorax.dcm", body_part="THORAX"))


def test_transfer_syntax_without_decoder_names_package(tmp_path, make_dicom, monkeypatch):
    mpeg = make_dicom(tmp_path / "mpeg.dcm", transfer_syntax="1.2.840.10008.1.2.4.100")
    with pytest.raises(ImageRejected) as err:
        read_image(mpeg)
    assert err.value.reason_code == "unsupported_transfer_syntax"

    class Missing:
        is_available = False

    import pydicom.pixels.decoders.base as base

    monkeypatch.setattr(base, "get_decoder", lambda uid: Missing())
    j2k = make_dicom(tmp_path / "j2k.dcm", transfer_syntax="1.2.840.10008.1.2.4.90")
    with pytest.raises(ImageRejected) as err:
        read_image(j2k)
    assert err.value.reason_code == "unsupported_transfer_syntax"
    assert "pylibjpeg-openjpeg" in err.value.message


@pytest.mark.parametrize(
    "raw,view",
    [
        ("PA", "PA"),
        ("ap", "AP"),
        ("AP SUPINE", "AP"),
        ("LL", "LL"),
        ("LATERAL", "LATERAL"),
        ("RL", "LATERAL"),
        ("", "UNKNOWN"),
        (None, "UNKNOWN"),
        ("OBL", "UNKNOWN"),
    ],
)
def test_view_normalisation(raw, view):
    assert normalise_view(raw) == view
    assert view in dec.VIEW_POSITIONS
