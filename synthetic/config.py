"""The synthetic cohort's configuration, declared once (radsim.data_contracts.settings).

`radsim synth`'s options, `generate_cohort`'s settings and the demo's cohort derive from
`SynthConfig`. It imports no numpy or pydicom, so `radsim synth --help` stays fast.
"""
from __future__ import annotations

from typing import Any

from pydantic import Field

from radsim.data_contracts.settings import Settings, with_values

DEFAULT_IMAGE_SIZE = 512  # px, the side of each rendered DICOM image
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 64, 4096  # px: the renderer's anatomy needs 64; 4096 is a large detector

# the options of `radsim synth` that come from this config, in --help order (--exams is required there)
CLI_FIELDS = ("seed", "omission_rate", "overcall_rate", "bad", "preview", "image_size")


class SynthConfig(Settings):
    exams: int = Field(ge=1, description="number of exams to generate")
    seed: int = Field(0, description="random seed: the same seed gives the same cohort, byte for byte")
    omission_rate: float = Field(0.0, ge=0.0, le=1.0, description="probability that a finding shown in the image "
                                 "is left out of the report")
    overcall_rate: float = Field(0.0, ge=0.0, le=1.0, description="probability that a report calls one absent "
                                 "finding present")
    bad: bool = Field(False, description="also add bad records (corrupt DICOM, empty report, duplicate id, "
                      "non-chest) listed in bad_exams.csv")
    preview: bool = Field(False, description="write preview.png, a contact sheet of images per finding")
    image_size: int = Field(DEFAULT_IMAGE_SIZE, ge=MIN_IMAGE_SIZE, le=MAX_IMAGE_SIZE,
                            description=f"image side in pixels, {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE}")


def synth_config(config: SynthConfig | None = None, **values: Any) -> SynthConfig:
    """`config` (or the defaults) with `values` set: the one place cohort settings are validated."""
    return with_values(SynthConfig, config, values, "synth settings")
