"""Radiograph decoding: DICOM, PNG or JPEG → a float image in display orientation (DESIGN §7).

Every refusal is an `ImageRejected` carrying a quarantine reason code, so the shard stage
can quarantine the record instead of crashing. Headers are checked before any pixel
buffer is allocated: a file that claims 100k × 100k pixels is refused from its header.
Stored DICOM values become display values in radsim.imaging.dicom_display.
"""
from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# 64 Mpx per image (8k × 8k): far above any chest radiograph (≈ 4.3k × 4.3k), far below a bomb.
from .config import DEFAULT_MAX_PIXELS
from .dicom_display import CORRUPT_DATA, percentile_window
from .dicom_display import header_text as _text
from .dicom_display import to_display as _to_display
from .reduced_decode import Geometry

MIN_SIDE = 8
MAX_FILE_BYTES = 2 << 30  # 2 GiB on disk: refused before reading

RADIOGRAPH_MODALITIES = frozenset({"CR", "DX", "RG", "PX"})
CHEST_BODY_PARTS = frozenset({"CHEST", "THORAX", "LUNG", "LUNGS", "CHEST_LUNG", "TORAX", "THORAX_CHEST"})
VIEW_POSITIONS = ("PA", "AP", "LATERAL", "LL", "UNKNOWN")

# Which pip packages decode which transfer syntaxes (named in `unsupported_transfer_syntax` messages).
_JPEG_PKGS = "pylibjpeg pylibjpeg-libjpeg"
_J2K_PKGS = "pylibjpeg pylibjpeg-openjpeg"
CODEC_PACKAGES: dict[str, str] = {
    "1.2.840.10008.1.2.4.50": _JPEG_PKGS,  # JPEG baseline
    "1.2.840.10008.1.2.4.51": _JPEG_PKGS,  # JPEG extended
    "1.2.840.10008.1.2.4.57": _JPEG_PKGS,  # JPEG lossless
    "1.2.840.10008.1.2.4.70": _JPEG_PKGS,  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.80": _JPEG_PKGS,  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81": _JPEG_PKGS,  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.90": _J2K_PKGS,  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91": _J2K_PKGS,  # JPEG 2000
    "1.2.840.10008.1.2.4.201": _J2K_PKGS,  # HTJ2K lossless
    "1.2.840.10008.1.2.4.202": _J2K_PKGS,  # HTJ2K lossless RPCL
    "1.2.840.10008.1.2.4.203": _J2K_PKGS,  # HTJ2K
    "1.2.840.10008.1.2.5": "pylibjpeg pylibjpeg-rle",  # RLE (pydicom also has a numpy decoder)
}


class ImageRejected(Exception):
    """An image the pipeline refuses, with the quarantine reason code that says why."""

    def __init__(self, reason_code: str, message: str):
        super().__init__(f"{reason_code}: {message}")
        self.reason_code = reason_code
        self.message = message


@dataclass(frozen=True)
class DecodedImage:
    """A decoded radiograph: float32 in [0, 1], bright = dense (bone), in display orientation."""

    pixels: np.ndarray  # (H, W) float32
    view_position: str  # one of VIEW_POSITIONS
    bits: int  # bits per sample of the source data
    photometric: str  # MONOCHROME1, MONOCHROME2, RGB, L, ...
    source_format: str  # dicom, png or jpeg
    geometry: Geometry | None = None  # set when decoded at reduced resolution (radsim.imaging.reduced_decode)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.pixels.shape)  # type: ignore[return-value]

    @property
    def reduction(self) -> int:
        """Each side was decoded at 1/reduction of the stored size (1: every pixel)."""
        return self.geometry.factor if self.geometry is not None else 1


# --------------------------------------------------------------------------- helpers


def normalise_view(value: Any) -> str:
    """Map a header or table view label onto PA / AP / LATERAL / LL / UNKNOWN."""
    if value is None:
        return "UNKNOWN"
    v = " ".join(str(value).upper().replace("_", " ").replace("-", " ").split())
    if not v:
        return "UNKNOWN"
    if v in ("PA", "POSTERO ANTERIOR", "POSTEROANTERIOR", "PA ERECT"):
        return "PA"
    if v in ("AP", "ANTERO POSTERIOR", "ANTEROPOSTERIOR") or v.startswith("AP "):
        return "AP"
    if v in ("LL", "LEFT LATERAL", "L LAT", "LT LAT"):
        return "LL"
    if v in ("LATERAL", "LAT", "RL", "RIGHT LATERAL", "R LAT", "RT LAT") or "LATERAL" in v:
        return "LATERAL"
    return "UNKNOWN"


def sniff_format(head: bytes) -> str | None:
    """'dicom', 'png' or 'jpeg' from the first bytes, or None."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    return None


def read_source_bytes(uri_or_path: str | os.PathLike[str]) -> bytes:
    """The raw bytes of an image file (local path, file:// or any fsspec URI)."""
    s = os.fspath(uri_or_path)
    if "://" in s and not s.startswith("file://"):
        try:
            import fsspec
        except ImportError:  # pragma: no cover - fsspec ships with prefect
            raise ImageRejected("missing_file", f"cannot open {s}: fsspec is not installed") from None
        try:
            with fsspec.open(s, "rb") as fh:
                return fh.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            raise ImageRejected("missing_file", f"no such file: {s}") from None
        except IsADirectoryError:
            raise ImageRejected("missing_file", f"is a directory, not an image file: {s}") from None
    path = Path(s[len("file://"):] if s.startswith("file://") else s)
    if path.is_dir():
        raise ImageRejected("missing_file", f"is a directory, not an image file: {path}")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageRejected("missing_file", f"no such file: {path}") from None
    except OSError as exc:
        raise ImageRejected("missing_file", f"cannot open {path}: {exc.strerror}") from None
    if size > MAX_FILE_BYTES:
        raise ImageRejected("implausible_size", f"file is {size} bytes, above the {MAX_FILE_BYTES}-byte limit")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImageRejected("unreadable_image", f"cannot read {path}: {exc.strerror}") from None


# --------------------------------------------------------------------------- entry points


def read_image(uri_or_path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS,
               output_size: int | None = None) -> DecodedImage:
    """Decode one image file or refuse it with an `ImageRejected` reason code."""
    return decode_bytes(read_source_bytes(uri_or_path), max_pixels=max_pixels, name=os.fspath(uri_or_path),
                        output_size=output_size)


def decode_bytes(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, name: str = "<bytes>",
                 output_size: int | None = None) -> DecodedImage:
    """Decode in-memory file contents (the format is sniffed, never taken from the name).

    `output_size`: the long side the caller resizes to. JPEG 2000 and 8-bit JPEG DICOMs are then
    decoded at the coarsest resolution whose long side is still at least that (far faster, the
    same display after resizing); None decodes every pixel.
    """
    if len(data) == 0:
        raise ImageRejected("unreadable_image", f"zero-byte file: {name}")
    fmt = sniff_format(data[:132])
    if fmt in ("png", "jpeg"):
        return _decode_pil(data, fmt, max_pixels)
    if fmt == "dicom" or _looks_like_raw_dicom(data):
        return _decode_dicom(data, max_pixels, output_size)
    raise ImageRejected("not_dicom", f"not a DICOM, PNG or JPEG file: {name}")


def _looks_like_raw_dicom(data: bytes) -> bool:
    """A DICOM dataset without the 128-byte preamble (old ACR-NEMA style exports)."""
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = dcmread(io.BytesIO(data[:4096]), stop_before_pixels=True, force=True)
            return "SOPClassUID" in ds or "Modality" in ds
    except (InvalidDicomError, *CORRUPT_DATA):  # anything unparsable is "not DICOM"
        return False


# --------------------------------------------------------------------------- PNG / JPEG


def _decode_pil(data: bytes, fmt: str, max_pixels: int) -> DecodedImage:
    from PIL import Image, ImageOps

    try:
        with warnings.catch_warnings():
            # PIL's own bomb guard, enforced as an error rather than a warning.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            w, h = im.size
            if w * h > max_pixels:
                raise ImageRejected(
                    "implausible_size", f"{fmt} claims {w}x{h} pixels, above the {max_pixels}-pixel limit"
                )
            if min(w, h) < MIN_SIDE:
                raise ImageRejected("implausible_size", f"{fmt} is {w}x{h} pixels, below {MIN_SIDE} px")
            im.load()
            if fmt == "jpeg":
                im = ImageOps.exif_transpose(im)
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected("implausible_size", f"{fmt}: {exc}") from None
    except CORRUPT_DATA as exc:  # PIL raises many types for corrupt data
        raise ImageRejected("unreadable_image", f"corrupt or truncated {fmt}: {type(exc).__name__}: {exc}") from None
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float32)
        top = float(arr.max()) if arr.size else 0.0
        bits = max(8, int(np.ceil(np.log2(top + 1)))) if top > 0 else 8
        pixels = np.clip(arr / float(2**bits - 1), 0.0, 1.0)
        return DecodedImage(pixels.astype(np.float32), "UNKNOWN", 16, "L16", fmt)
    if mode == "F":
        pixels = percentile_window(np.asarray(im, dtype=np.float32))
        return DecodedImage(pixels, "UNKNOWN", 32, "F", fmt)
    photometric = "L" if mode in ("L", "1") else mode
    if mode != "L":
        im = im.convert("RGBA").convert("L") if "A" in mode or mode == "P" else im.convert("L")
    pixels = np.asarray(im, dtype=np.float32) / 255.0
    return DecodedImage(pixels, "UNKNOWN", 8, photometric, fmt)


# --------------------------------------------------------------------------- DICOM


def _decode_dicom(data: bytes, max_pixels: int, output_size: int | None = None) -> DecodedImage:
    from pydicom import dcmread

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # value-length warnings from real-world headers
            header = dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
    except CORRUPT_DATA as exc:
        raise ImageRejected("unreadable_image", f"corrupt DICOM header: {type(exc).__name__}: {exc}") from None
    _check_header(header, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = dcmread(io.BytesIO(data), force=True)
    except CORRUPT_DATA as exc:
        raise ImageRejected("unreadable_image", f"corrupt or truncated DICOM: {type(exc).__name__}: {exc}") from None
    return decode_dataset(ds, output_size)


def decode_dataset(ds: Any, output_size: int | None = None) -> DecodedImage:
    """A parsed DICOM's pixel data → display image. No radiograph/chest policy: `read_image` checks the header first.

    `output_size` as for `decode_bytes` (None: every pixel).
    """
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise ImageRejected("no_pixel_data", "DICOM object has no pixel data")
    if "PixelData" not in ds:
        raise ImageRejected("unreadable_image", "float pixel data is not supported for radiographs")
    if "Rows" not in ds or "Columns" not in ds:
        raise ImageRejected("unreadable_image", "DICOM pixel data without Rows/Columns")
    _check_transfer_syntax(ds)
    arr, geometry = _stored_pixels(ds, output_size)
    pixels = _to_display(arr, ds)
    return DecodedImage(
        pixels=pixels,
        view_position=normalise_view(ds.get("ViewPosition")),
        bits=int(ds.get("BitsStored") or ds.get("BitsAllocated") or 0),
        photometric=str(ds.get("PhotometricInterpretation", "")).strip(),
        source_format="dicom",
        geometry=geometry,
    )


def _stored_pixels(ds: Any, output_size: int | None) -> tuple[np.ndarray, Geometry | None]:
    """Stored values at the coarsest resolution `output_size` allows, else the full first frame."""
    if output_size is not None:
        from .reduced_decode import REDUCED_DECODE_FAILURES, SizeMismatch, reduced_stored_values

        failure: Exception | None = None
        try:
            reduced = reduced_stored_values(ds, output_size)
        except SizeMismatch as exc:  # refused before any decode buffer exists
            raise ImageRejected("unreadable_image", str(exc)) from None
        # a codestream this path cannot read: the full decode gives today's verdict
        except REDUCED_DECODE_FAILURES as exc:
            reduced, failure = None, exc
        if reduced is not None:
            return reduced.stored, reduced.geometry
        arr = _pixel_array(ds)
        if failure is not None:  # the full decoder read it: the reduced path, not the data, is at fault
            _warn_full_fallback(failure)
        return arr, None
    return _pixel_array(ds), None


_fallback_warned = False


def _warn_full_fallback(exc: Exception) -> None:
    """Once per process: images the reduced decoder should have read are decoded in full (slower, same verdict)."""
    global _fallback_warned
    if not _fallback_warned:
        _fallback_warned = True
        import logging

        logging.getLogger(__name__).warning(
            "reduced-resolution decode failed on a codestream the full decoder reads (%s: %s); such images are "
            "decoded in full, which is slower", type(exc).__name__, str(exc)[:200])


def _check_header(ds: Any, max_pixels: int) -> None:
    """Refusals decided from the header alone, before any pixel buffer exists."""
    modality = _text(ds, "Modality")
    if modality not in RADIOGRAPH_MODALITIES:
        shown = modality or "missing"
        raise ImageRejected(
            "not_radiograph",
            f"Modality {shown} is not a radiograph (accepted: {', '.join(sorted(RADIOGRAPH_MODALITIES))})",
        )
    body = _text(ds, "BodyPartExamined")
    if body and body not in CHEST_BODY_PARTS and "CHEST" not in body and "THORA" not in body:
        raise ImageRejected("not_chest", f"BodyPartExamined {body} is not chest")
    if _text(ds, "BurnedInAnnotation") == "YES":
        raise ImageRejected(
            "burned_in_annotation", "BurnedInAnnotation is YES: patient details may be burned into the pixels"
        )
    if "Rows" in ds and "Columns" in ds:
        try:
            rows, cols = int(ds.Rows), int(ds.Columns)
            frames = int(ds.get("NumberOfFrames") or 1)
            samples = int(ds.get("SamplesPerPixel") or 1)
        except (TypeError, ValueError) as exc:
            raise ImageRejected("unreadable_image", f"bad image dimensions in header: {exc}") from None
        if rows * cols * max(frames, 1) * max(samples, 1) > max_pixels:
            raise ImageRejected(
                "implausible_size",
                f"header claims {rows}x{cols} pixels x {frames} frame(s) x {samples} sample(s), "
                f"above the {max_pixels}-pixel limit",
            )
        if min(rows, cols) < MIN_SIDE:
            raise ImageRejected("implausible_size", f"header claims {rows}x{cols} pixels, below {MIN_SIDE} px")
    bits = ds.get("BitsAllocated")
    if bits is not None and int(bits) not in (1, 8, 16):
        raise ImageRejected("unreadable_image", f"BitsAllocated {bits} is not supported (8 or 16 bit radiographs)")


def _check_transfer_syntax(ds: Any) -> None:
    from pydicom.pixels.decoders.base import get_decoder

    tsyntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if tsyntax is None:  # preamble-less files: pydicom guesses implicit little endian
        return
    if not tsyntax.is_compressed:
        return
    pkgs = CODEC_PACKAGES.get(str(tsyntax))
    hint = f"pip install {pkgs}" if pkgs else "no pydicom plugin known to radsim decodes it"
    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError:
        raise ImageRejected(
            "unsupported_transfer_syntax", f"transfer syntax {tsyntax} ({tsyntax.name}) cannot be decoded: {hint}"
        ) from None
    if not decoder.is_available:
        raise ImageRejected(
            "unsupported_transfer_syntax",
            f"transfer syntax {tsyntax} ({tsyntax.name}) needs a decoder plugin that is not installed: {hint}",
        )


def _pixel_array(ds: Any) -> np.ndarray:
    """The first frame as a numpy array, or ImageRejected for corrupt or truncated data."""
    try:
        frames = int(ds.get("NumberOfFrames") or 1)
        if frames > 1:
            ds.pixel_array_options(index=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = ds.pixel_array
    except ImageRejected:
        raise
    except CORRUPT_DATA as exc:  # codecs raise many types on corrupt streams
        raise ImageRejected(
            "unreadable_image", f"pixel data cannot be decoded: {type(exc).__name__}: {str(exc)[:200]}"
        ) from None
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and int(ds.get("SamplesPerPixel") or 1) > 1:
        arr = arr[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    elif arr.ndim == 3:
        arr = arr[0]
    if arr.ndim != 2 or arr.shape != (int(ds.Rows), int(ds.Columns)):
        raise ImageRejected(
            "unreadable_image", f"decoded shape {arr.shape} does not match header {ds.Rows}x{ds.Columns}"
        )
    return arr
