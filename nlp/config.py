"""The label stage's configuration, declared once (radsim.data_contracts.settings).

`radsim label`'s options, the label runner's defaults and the pipeline's `runner.label_batch_size`
derive from `LabelConfig`. It imports no spaCy, so `radsim label --help` stays fast.
"""
from __future__ import annotations

from pydantic import Field, model_validator

from radsim.data_contracts.settings import Settings

# the options of `radsim label` that come from this config, in --help order
CLI_FIELDS = ("vocabulary", "replace_vocabulary", "workers", "batch_size")


class LabelConfig(Settings):
    vocabulary: str | None = Field(None, description="YAML vocabulary that extends the default (new findings, "
                                   "extra synonyms)")
    replace_vocabulary: bool = Field(False, description="use --vocabulary instead of the default vocabulary rather "
                                     "than extending it")
    workers: int = Field(1, ge=1, description="worker processes")
    batch_size: int = Field(512, ge=1, description="reports per batch sent to a worker and written at once")

    @model_validator(mode="after")
    def _replacement_needs_a_file(self) -> "LabelConfig":
        if self.replace_vocabulary and not self.vocabulary:
            raise ValueError("--replace-vocabulary needs --vocabulary FILE")
        return self


DEFAULT_BATCH = LabelConfig.model_fields["batch_size"].default
