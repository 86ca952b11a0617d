"""Decode a compressed DICOM only as finely as the stored image needs (issue 24).

A 2k × 2k chest film becomes a 256 px PNG, yet a full decode produces ~4 million pixels first.
JPEG 2000 stores resolution levels (each wavelet level halves both sides) and JPEG can run its
inverse DCT at 1/2, 1/4 or 1/8 scale, so both can stop at the coarsest size whose long side is
still at least the output size. The result holds the same stored values (same bit depth, sign
and scale, only fewer of them), so the caller applies today's modality LUT, VOI LUT or window
and MONOCHROME1 inversion to it unchanged (radsim.imaging.dicom_display).

Decoders considered (APIs checked against their sources; the full table is in README.md,
"Reduced-resolution decode"):
- Pillow's JPEG 2000 plugin (OpenJPEG 2.5, in Pillow's wheel): `reduce` discards levels; 9-16 bit
  grey comes back as I;16 shifted left to 16 bits, signed data offset by 2**(precision-1), both
  exactly reversible (pydicom's own Pillow plugin undoes them the same way). **Chosen.** Its
  `reduce` rounds the reduced size half up while OpenJPEG returns ceil(side / 2**r), so odd sizes
  fail ("broken data stream"): we set the tile extents to the ceil size ourselves.
- Pillow's JPEG plugin (libjpeg-turbo): `draft` scales the DCT by 1/2, 1/4, 1/8. 8-bit only: it
  cannot open 12-bit JPEG Extended. **Chosen** for 8-bit grey JPEG Baseline/Extended.
- pylibjpeg-openjpeg 2.6 (pydicom's default J2K plugin): `decode(stream, j2k_format, reshape)` has
  no reduce argument; pylibjpeg-libjpeg 2.5 `decode(stream, colour_transform, reshape)` has no
  DCT scaling. Both stay the full-resolution path.
- imagecodecs: `jpeg2k_decode` has no reduce and `jpeg8_decode` no scaling; GDCM's Python reader
  decodes whole frames. Neither is installed, and neither would help.

Whatever this module declines (12-bit JPEG, colour, multi-frame, signed JPEG, a codestream whose
precision or sign disagrees with the header, tiles with offsets or subsampling) returns None
and is decoded at full resolution as before. A codestream it cannot parse or decode raises
`REDUCED_DECODE_FAILURES`, and the caller falls back to the full decode, whose verdict
(image or quarantine reason) is today's.
"""
from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

J2K_SYNTAXES = frozenset({"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"})  # JPEG 2000 lossless, lossy
JPEG_SYNTAXES = frozenset({"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"})  # JPEG baseline, extended
JPEG_SCALES = (8, 4, 2, 1)  # libjpeg's DCT scaling factors, coarsest first


class CodestreamError(ValueError):
    """A codestream header too short or malformed to plan a reduced decode."""


# What a reduced decode raises on data it cannot read: the full decode then decides.
REDUCED_DECODE_FAILURES = (CodestreamError, OSError, EOFError, struct.error, ValueError)


class SizeMismatch(Exception):
    """The codestream's own size differs from the header's Rows × Columns (refused before decoding)."""


@dataclass(frozen=True)
class J2KHeader:
    width: int
    height: int
    precision: int
    signed: bool
    components: int
    levels: int  # fewest wavelet decomposition levels in the main header (COD / COC)
    plain_grid: bool  # no image offset and no component subsampling


@dataclass(frozen=True)
class JpegFrame:
    width: int
    height: int
    precision: int
    components: int
    sof: int  # the SOFn marker's low byte (0xC0 baseline, 0xC1 extended, ...)


@dataclass(frozen=True)
class Geometry:
    """Where a reduced decode's pixels sit in the full image, so resizing keeps today's output geometry."""

    factor: int  # each side decoded at 1/factor
    full_shape: tuple[int, int]  # (rows, columns) at full resolution
    # (left, top, right, bottom) of the full image, in the reduced pixels' coordinates
    extent: tuple[float, float, float, float]


@dataclass(frozen=True)
class Reduced:
    stored: np.ndarray  # stored values, same dtype and scale as a full decode
    geometry: Geometry


def wavelet_geometry(rows: int, cols: int, levels: int) -> Geometry:
    """JPEG 2000: low-pass sample i of level r sits on full-resolution sample i * 2**r (ISO 15444-1 F.3).

    In pixel-area coordinates (sample k covers [k, k+1)) that is a shift of half a full pixel less
    half a reduced one; ignoring it moves the output by ~0.45 px and costs rank correlation at edges.
    """
    s = 1 << levels
    return Geometry(s, (rows, cols), (0.5 - 0.5 / s, 0.5 - 0.5 / s, (cols - 0.5) / s + 0.5, (rows - 0.5) / s + 0.5))


def dct_geometry(rows: int, cols: int, scale: int) -> Geometry:
    """JPEG DCT scaling: output pixel i is the mean of full pixels s*i .. s*i+s-1, so the grids align."""
    return Geometry(scale, (rows, cols), (0.0, 0.0, cols / scale, rows / scale))


def parse_j2k_header(cs: bytes) -> J2KHeader:
    """SIZ, COD and COC of a raw JPEG 2000 codestream's main header (ISO 15444-1 A.5, A.6)."""
    if cs[:4] != b"\xff\x4f\xff\x51":
        raise CodestreamError("not a JPEG 2000 codestream (no SOC + SIZ)")
    size: tuple[int, ...] | None = None
    levels: list[int] = []
    pos = 2
    while pos + 4 <= len(cs):
        marker, length = struct.unpack(">HH", cs[pos:pos + 4])
        body = cs[pos + 4:pos + 2 + length]
        if marker == 0xFF90 or length < 2:  # first tile-part: the main header is over
            break
        if len(body) != length - 2:
            raise CodestreamError("codestream header is truncated")
        if marker == 0xFF51:
            size = struct.unpack(">HIIIIIIIIH", body[:36]) + tuple(body[36:39])
        elif marker == 0xFF52:  # COD: Scod, SGcod (4 bytes), then NL
            levels.append(body[5])
        elif marker == 0xFF53:  # COC: component index (1 or 2 bytes), Scoc, then NL
            levels.append(body[(2 if size is not None and size[9] < 257 else 3)])
        pos += 2 + length
    if size is None or not levels:
        raise CodestreamError("codestream header has no SIZ or no COD")
    _, xsiz, ysiz, x0, y0, _, _, _, _, components, ssiz, xr, yr = size
    return J2KHeader(width=xsiz - x0, height=ysiz - y0, precision=(ssiz & 0x7F) + 1, signed=bool(ssiz & 0x80),
                     components=components, levels=min(levels), plain_grid=x0 == 0 and y0 == 0 and xr == 1 and yr == 1)


def jpeg_frame(cs: bytes) -> JpegFrame:
    """The frame header (SOFn) of a JPEG stream: size, precision, components."""
    if cs[:2] != b"\xff\xd8":
        raise CodestreamError("not a JPEG stream (no SOI)")
    pos = 2
    while pos + 4 <= len(cs):
        if cs[pos] != 0xFF:
            raise CodestreamError("JPEG marker expected")
        kind = cs[pos + 1]
        if kind == 0xFF:  # fill byte
            pos += 1
            continue
        (length,) = struct.unpack(">H", cs[pos + 2:pos + 4])
        if 0xC0 <= kind <= 0xCF and kind not in (0xC4, 0xC8, 0xCC):
            body = cs[pos + 4:pos + 10]
            if len(body) < 6:
                raise CodestreamError("JPEG frame header is truncated")
            precision, height, width, components = struct.unpack(">BHHB", body)
            return JpegFrame(width, height, precision, components, kind)
        if kind == 0xDA:  # start of scan before any frame header
            break
        pos += 2 + length
    raise CodestreamError("JPEG stream has no frame header")


def coarsest_halvings(long_side: int, output_size: int, most: int) -> int:
    """The most halvings (at most `most`) that keep the long side at least `output_size` px."""
    steps = 0
    while steps < most and (long_side >> (steps + 1)) >= output_size:
        steps += 1
    return steps


def _open(cs: bytes, fmt: str) -> Any:
    from PIL import Image

    try:
        return Image.open(io.BytesIO(cs), formats=(fmt,))
    except Image.DecompressionBombError as exc:  # max_pixels set above Pillow's limit: decode in full instead
        raise CodestreamError(str(exc)) from None


def decode_j2k(cs: bytes, header: J2KHeader, levels: int) -> np.ndarray:
    """Stored values of a grey codestream with `levels` resolution levels discarded (Pillow/OpenJPEG)."""
    im = _open(cs, "JPEG2000")
    step = 1 << levels
    w, h = -(-header.width // step), -(-header.height // step)
    tile = im.tile[0]
    codec, _, layers, fd, length = tile.args
    # Pillow's own `reduce` rounds half up; OpenJPEG's reduced image is ceil(side / 2**levels).
    im.tile = [tile._replace(extents=(0, 0, w, h), args=(codec, levels, layers, fd, length))]
    im._size = (w, h)
    im.load()
    raw = np.asarray(im)
    if raw.shape != (h, w):
        raise CodestreamError(f"JPEG 2000 decoded to {raw.shape}, expected {(h, w)}")
    container = 8 if raw.dtype == np.uint8 else 16
    values = raw.astype(np.int32)
    if header.signed:  # Pillow offsets signed samples by 2**(precision-1) before its shift
        values = (values >> (container - header.precision)) - (1 << (header.precision - 1))
        return values.astype(np.int8 if header.precision <= 8 else np.int16)
    return (values >> (container - header.precision)).astype(raw.dtype)


def decode_jpeg(cs: bytes, frame: JpegFrame, scale: int) -> np.ndarray:
    """8-bit grey JPEG decoded at 1/`scale` through libjpeg's DCT scaling (Pillow `draft`)."""
    im = _open(cs, "JPEG")
    if scale > 1:
        im.draft("L", (frame.width // scale, frame.height // scale))
    im.load()
    expected = (-(-frame.height // scale), -(-frame.width // scale))
    raw = np.asarray(im)
    if im.mode != "L" or raw.shape != expected:
        raise CodestreamError(f"JPEG decoded to {im.mode} {raw.shape}, expected L {expected}")
    return raw


def reduced_stored_values(ds: Any, output_size: int) -> Reduced | None:
    """Stored values at the coarsest level whose long side is >= `output_size`, or None (decode in full).

    Raises SizeMismatch when the codestream's size differs from Rows × Columns, and one of
    `REDUCED_DECODE_FAILURES` when the codestream cannot be read this way.
    """
    tsyntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    if tsyntax not in J2K_SYNTAXES and tsyntax not in JPEG_SYNTAXES:
        return None
    if int(ds.get("NumberOfFrames") or 1) != 1 or int(ds.get("SamplesPerPixel") or 1) != 1:
        return None
    if str(ds.get("PhotometricInterpretation", "")).strip() not in ("MONOCHROME1", "MONOCHROME2"):
        return None
    from pydicom.encaps import get_frame

    cs = get_frame(ds.PixelData, 0, number_of_frames=1)
    rows, cols = int(ds.Rows), int(ds.Columns)
    bits, signed = int(ds.get("BitsStored") or 0), int(ds.get("PixelRepresentation") or 0) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's size warnings: the DICOM header was checked already
        if tsyntax in J2K_SYNTAXES:
            return _reduced_j2k(cs, rows, cols, bits, signed, output_size)
        return _reduced_jpeg(cs, rows, cols, signed, output_size)


def _reduced_j2k(cs: bytes, rows: int, cols: int, bits: int, signed: bool, output_size: int) -> Reduced | None:
    header = parse_j2k_header(cs)
    if (header.height, header.width) != (rows, cols):
        raise SizeMismatch(f"JPEG 2000 codestream is {header.height}x{header.width}, the header says {rows}x{cols}")
    if header.components != 1 or not header.plain_grid or header.precision != bits or header.signed != signed \
            or header.precision > 16:
        return None
    levels = coarsest_halvings(max(rows, cols), output_size, header.levels)
    if levels == 0:
        return None
    return Reduced(decode_j2k(cs, header, levels), wavelet_geometry(rows, cols, levels))


def _reduced_jpeg(cs: bytes, rows: int, cols: int, signed: bool, output_size: int) -> Reduced | None:
    frame = jpeg_frame(cs)
    if (frame.height, frame.width) != (rows, cols):
        raise SizeMismatch(f"JPEG stream is {frame.height}x{frame.width}, the header says {rows}x{cols}")
    if frame.precision != 8 or frame.components != 1 or signed or frame.sof not in (0xC0, 0xC1):
        return None
    scale = next(s for s in JPEG_SCALES if max(rows, cols) // s >= output_size or s == 1)
    if scale == 1:
        return None
    return Reduced(decode_jpeg(cs, frame, scale), dct_geometry(rows, cols, scale))
