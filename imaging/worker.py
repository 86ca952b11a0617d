"""The unit of parallel work: decode + normalise + encode a batch of images.

Kept in its own small module with picklable inputs and outputs so a process pool (or a
Prefect task runner) can run it anywhere. Each item comes back as written-ready bytes, a
rejection with its reason code (bad input, quarantined), "unchanged", or "failed": an error
that is not bad input (a bug, a broken codec install). Which is which is the options' error
policy (QUARANTINE_BAD_IMAGES by default). A failed item is never quarantined: the shard stage
stops the run and names the exception (DESIGN §12).
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from radsim.data_contracts.error_policy import ErrorPolicy, Refusal

from .config import DEFAULT_IMAGE_SIZE, DEFAULT_MAX_PIXELS, DEFAULT_REDUCED_DECODE
from .decode import ImageRejected, decode_bytes, read_source_bytes
from .normalise import normalise_to_png


def _rejected(exc: BaseException) -> Refusal:
    return Refusal(exc.reason_code, exc.message)  # type: ignore[attr-defined]


def _out_of_memory(exc: BaseException) -> Refusal:
    return Refusal("implausible_size", "out of memory while decoding")


# An image the decoder refuses, or one too large to hold, is bad input; anything else fails the run.
QUARANTINE_BAD_IMAGES = ErrorPolicy("quarantine-bad-images", ((ImageRejected, _rejected),
                                                              (MemoryError, _out_of_memory)))


@dataclass(frozen=True)
class DecodeOptions:
    image_size: int = DEFAULT_IMAGE_SIZE
    max_pixels: int = DEFAULT_MAX_PIXELS
    digest_key: bytes = b""  # keys the source-file digest, so it cannot confirm a guessed file
    # decode JPEG 2000 / 8-bit JPEG DICOMs only as finely as image_size needs
    reduced_decode: bool = DEFAULT_REDUCED_DECODE
    policy: ErrorPolicy = QUARANTINE_BAD_IMAGES  # which errors are bad input (radsim.data_contracts.error_policy)


@dataclass(frozen=True)
class WorkItem:
    position: int  # index into the plan's rows
    uri: str
    known_digest: str | None = None  # digest recorded when this sample was sharded before


@dataclass(frozen=True)
class DecodeResult:
    position: int
    status: str  # "ok", "rejected", "unchanged" or "failed"
    png: bytes | None = None
    image_sha256: str | None = None
    view_position: str | None = None
    source_digest: str | None = None
    reason_code: str | None = None
    message: str | None = None


def source_digest(data: bytes, key: bytes) -> str:
    return hmac.new(key, data, hashlib.sha256).hexdigest()[:32]


def decode_item(item: WorkItem, opts: DecodeOptions) -> DecodeResult:
    try:
        data = read_source_bytes(item.uri)
        digest = source_digest(data, opts.digest_key)
        if item.known_digest is not None and digest == item.known_digest:
            return DecodeResult(item.position, "unchanged", source_digest=digest)
        image = decode_bytes(data, max_pixels=opts.max_pixels, name=item.uri,
                             output_size=opts.image_size if opts.reduced_decode else None)
        del data
        png, sha = normalise_to_png(image.pixels, opts.image_size, image.geometry)
        return DecodeResult(
            item.position, "ok", png=png, image_sha256=sha, view_position=image.view_position, source_digest=digest
        )
    except Exception as exc:  # noqa: BLE001 - the policy decides: bad input is refused, the rest fails the run
        refusal = opts.policy.judge(exc)
        if refusal is not None:
            return DecodeResult(item.position, "rejected", reason_code=refusal.reason_code, message=refusal.message)
        text = str(exc).replace(item.uri, "<image>")[:300]  # the path names raw ids: it stays out of the message
        return DecodeResult(item.position, "failed", message=f"{type(exc).__name__}: {text}")


def decode_batch(items: list[WorkItem], opts: DecodeOptions) -> list[DecodeResult]:
    """Decode a batch in order (the process-pool and Prefect task entry point)."""
    return [decode_item(item, opts) for item in items]
