"""The shard stage's configuration, declared once (radsim.data_contracts.settings).

`radsim shard`'s options, the `build_shards` flow's parameter, `write_shards` / `plan_shard_run`
and the pipeline's `[imaging]` defaults all derive from `ShardOptions`. It imports no torch and
no decoder, so `radsim shard --help` stays fast.
"""
from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from radsim.data_contracts.settings import Settings, with_values

from .splits import DEFAULT_FRACTIONS, check_fractions

DEFAULT_IMAGE_SIZE = 256  # px, the stored square image
MIN_IMAGE_SIZE = 8  # px: below it an image carries nothing a model can learn from
DEFAULT_MAX_PIXELS = 64_000_000  # rows x columns of a decoded image; a larger one is refused unallocated
DEFAULT_COMPACT_AFTER = 16  # small shards in the tail before they are merged
DEFAULT_REDUCED_DECODE = True  # decode only the resolution the stored image needs

# the options of `radsim shard` that come from this config, in --help order
CLI_FIELDS = ("image_size", "split_fractions", "maxcount", "compact_after", "batch_size", "reduced_decode")


class ShardOptions(Settings):
    image_size: int = Field(DEFAULT_IMAGE_SIZE, ge=MIN_IMAGE_SIZE, description="side of the square stored image in px")
    split_fractions: tuple[float, float, float] = Field(
        DEFAULT_FRACTIONS, description="TRAIN,VAL,TEST fractions for patients seen for the first time: 0,0,1 puts a "
        "validated set entirely into test. Sticky: a patient keeps the split splits.parquet recorded, whatever "
        "later runs ask")
    maxcount: int = Field(1000, ge=1, description="samples per shard at most")
    maxsize: int = Field(256 << 20, ge=1, description="bytes per shard at most")
    compact_after: int = Field(
        DEFAULT_COMPACT_AFTER,
        ge=0,
        description="merge the small shards at the end of the manifest (under half of "
        "--maxcount samples and of the size limit each) into full ones once there are this "
        "many, so nightly increments do not fragment the folder; 0: never",
    )
    batch_size: int = Field(32, ge=1, description="images per decode task, the unit of work sent to a worker")
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1, description="largest decoded image accepted (rows x columns); "
                            "a larger one is quarantined before any allocation")
    reduced_decode: bool = Field(
        DEFAULT_REDUCED_DECODE,
        description="decode JPEG 2000 and 8-bit JPEG DICOMs only down to the coarsest "
        "resolution level whose long side is still at least image_size (about 10x faster on "
        "2k chest films, the same image after resizing); false decodes every pixel as before",
    )

    @field_validator("split_fractions", mode="before")
    @classmethod
    def _fractions(cls, value: Any) -> tuple[float, float, float]:
        if isinstance(value, str):  # the command line's TRAIN,VAL,TEST
            try:
                value = [float(v) for v in value.strip("()[] ").split(",")]
            except ValueError:
                raise ValueError(f"three numbers TRAIN,VAL,TEST, e.g. 0.8,0.1,0.1, got {value!r}") from None
        return check_fractions(list(value))

    @field_validator("compact_after")
    @classmethod
    def _compaction(cls, value: int) -> int:
        if value == 1:
            raise ValueError("0 (never) or at least 2: one shard is never merged with itself")
        return value


def shard_options(options: ShardOptions | None = None, **values: Any) -> ShardOptions:
    """`options` (or the defaults) with `values` set: the one place shard settings are validated."""
    return with_values(ShardOptions, options, values, "shard options")
