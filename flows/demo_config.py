"""`radsim demo`'s settings, declared once (radsim.data_contracts.settings): its options and the flow's defaults.

Imports no torch or Prefect, so `radsim demo --help` stays fast.
"""
from __future__ import annotations

from pydantic import Field

from radsim.data_contracts.settings import Settings

# the options of `radsim demo` that come from this config, in --help order
CLI_FIELDS = ("out", "exams", "seed")


class DemoConfig(Settings):
    out: str = Field("demo-output", description="output folder (deleted and rebuilt on each run)")
    exams: int = Field(2000, ge=10, description="cohort size in exams (10 at least: every split needs patients)")
    seed: int = Field(0, description="random seed of the cohort")
