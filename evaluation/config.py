"""The evaluation stage's configuration, declared once (radsim.data_contracts.settings).

`radsim evaluate`'s options, `run_evaluation`'s defaults and the report's config.json derive
from `EvalConfig`. It imports no scikit-learn or matplotlib, so `radsim evaluate --help` stays fast.
"""
from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field

from radsim.data_contracts.settings import Settings

# the options of `radsim evaluate` that come from this config, in --help order
CLI_FIELDS = ("split", "max_queries", "seed", "plots")


Split = Literal["test", "val", "train", "all"]
SPLITS = get_args(Split)  # the split names `--split` accepts


class EvalConfig(Settings):
    split: Split = Field("test", description="split to evaluate")
    max_queries: int = Field(5000, ge=1, description="retrieval queries at most (seeded sample; the gallery is "
                             "always every exam)")
    seed: int = Field(0, description="seed of the random baseline, k-means and samples")
    plots: bool = Field(True, description="draw the PNG plots (--no-plots skips them)")


DEFAULT_MAX_QUERIES = EvalConfig.model_fields["max_queries"].default
DEFAULT_SEED = EvalConfig.model_fields["seed"].default
DEFAULT_CONFIG = EvalConfig()  # every setting at its default (a frozen model: safe to share)
