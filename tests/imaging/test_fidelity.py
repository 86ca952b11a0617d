"""The reduced-resolution decode stores the same image as the full decode, on every real DICOM."""
from __future__ import annotations

import numpy as np
import pytest

from radsim.imaging.fidelity import compare_decodes, rank_correlation
from radsim.imaging.reduced_decode import J2K_SYNTAXES, JPEG_SYNTAXES

MIN_RHO = 0.98
# sha256 (first 32 hex) of the square uint8 image the shard stage stored before issue 24 (main at cf8e9d9),
# for the files whose syntaxes have no resolution levels: the reduced-decode path must not change them.
BEFORE = {
    ("RG1_JLSN.dcm", 256): "69204ff59852b2ced2f5de3f38232416",
    ("RG1_JLSN.dcm", 128): "7cd678d54d5a96f21952607b0db290f0",
    ("RG2_JPLL.dcm", 256): "beeb6f456826f6297d1dc9bc9cf4c1bc",
    ("RG2_JPLL.dcm", 128): "9562d0b3c4de4a3b7501224867c2a124",
    ("RG2_JPLY_fixed.dcm", 256): "6d5a9eac5407f7a8c73805878326b5ad",
    ("RG2_JPLY_fixed.dcm", 128): "7e321fb628fdb6df7e67cbd9c1786714",
}


def _real_dicoms(folder) -> list:
    files = sorted(folder.glob("*.dcm"))
    assert len(files) >= 5, f"expected the five real DICOMs in {folder}, found {[f.name for f in files]}"
    return files


def _stored_digest(path, size: int) -> str:
    import hashlib

    from pydicom import dcmread

    from radsim.imaging.decode import decode_dataset
    from radsim.imaging.normalise import square_image

    img = decode_dataset(dcmread(path), size)
    return hashlib.sha256(square_image(img.pixels, size, img.geometry).tobytes()).hexdigest()[:32]


def _syntax(path) -> str:
    from pydicom import dcmread

    return str(dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)


@pytest.mark.parametrize("size", [256, 128])
def test_every_real_dicom_keeps_its_image(shared_dicom_dir, size):
    results, failures = [], []
    for path in _real_dicoms(shared_dicom_dir):
        fid = compare_decodes(path, size)
        results.append(fid)
        if fid.rho < MIN_RHO:
            failures.append(f"{fid.name}: rank correlation {fid.rho:.4f} < {MIN_RHO}")
        if _syntax(path) in J2K_SYNTAXES:
            # The JPEG 2000 films must really take the reduced path, or this test proves nothing.
            assert fid.reduction >= 4, f"{fid.name} decoded at 1/{fid.reduction} only"
        else:
            assert fid.reduction == 1, f"{fid.name} has no usable resolution levels yet was reduced"
    assert not failures, "; ".join(failures)
    assert {f.name for f in results} >= {"966_fixed.dcm", "RG1_J2KI.dcm"}


def test_syntaxes_without_levels_store_byte_identical_images(shared_dicom_dir):
    """JPEG-LS, JPEG lossless and 12-bit JPEG Extended decode exactly as before (same PNG bytes)."""
    checked = []
    for path in _real_dicoms(shared_dicom_dir):
        syntax = _syntax(path)
        if syntax in J2K_SYNTAXES:
            continue
        for size in (256, 128):
            fid = compare_decodes(path, size)
            assert fid.identical and fid.reduction == 1, (fid, syntax)
        checked.append(syntax)
    assert {"1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.51"} <= set(checked)
    for (name, size), digest in BEFORE.items():
        assert _stored_digest(shared_dicom_dir / name, size) == digest, (name, size)
    assert "1.2.840.10008.1.2.4.51" in JPEG_SYNTAXES  # the 12-bit one: a JPEG syntax Pillow cannot scale


def test_rank_correlation_handles_ties_and_order():
    a = np.array([[0, 0, 1], [2, 2, 3]], dtype=np.uint8)
    assert rank_correlation(a, a) == pytest.approx(1.0)
    assert rank_correlation(a, 255 - a) == pytest.approx(-1.0)
    assert rank_correlation(a, a * 3 + 7) == pytest.approx(1.0)  # monotone: ranks unchanged
    b = np.array([[0, 1, 0], [2, 3, 2]], dtype=np.uint8)
    assert 0.5 < rank_correlation(a, b) < 1.0
    with pytest.raises(ValueError):
        rank_correlation(a, a.T)
