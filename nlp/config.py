"""The label stage's configuration, declared once (radsim.data_contracts.settings).

`radsim label`'s options, the label runner's defaults and the pipeline's `runner.label_batch_size`
and `labels.certainty_threshold` derive from `LabelConfig`. It imports no spaCy, so `radsim label
--help` stays fast.
"""
from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from radsim.data_contracts.settings import Settings

from .certainty import DEFAULT_THRESHOLD, CertaintyThreshold
from .input_files import ID, TEXT, InputFormat, parse_delimiter

# the options of `radsim label` that come from this config, in --help order
CLI_FIELDS = ("vocabulary", "replace_vocabulary", "certainty_threshold", "workers", "batch_size", "delimiter",
              "id_column", "text_column")


#: texts spaCy processes per `nlp.pipe` batch: the inner unit of every labelling path
PIPE_BATCH = 256


class LabelConfig(Settings):
    vocabulary: str | None = Field(None, description="YAML vocabulary that extends the default (new findings, "
                                   "extra synonyms)")
    replace_vocabulary: bool = Field(False, description="use --vocabulary instead of the default vocabulary rather "
                                     "than extending it")
    certainty_threshold: CertaintyThreshold = Field(
        DEFAULT_THRESHOLD, description="the least certain wording that still counts as present (1): definite (stated "
        "plainly), consistent ('consistent with', > 90%), probable ('probable', 'suspicious for', ~75%) or possible "
        "(~50%); less certain wording is uncertain (-1)")
    workers: int = Field(1, ge=1, description="worker processes")
    batch_size: int = Field(512, ge=1, description="reports per batch sent to a worker and written at once")
    delimiter: str | None = Field(None, description="field delimiter of a delimited-text INPUT: one character, or "
                                  "tab, comma, semicolon, pipe (none: tab for .tsv, comma otherwise)")
    id_column: str = Field(ID, min_length=1, description="INPUT column holding the exam id (matched in any case)")
    text_column: str = Field(TEXT, min_length=1, description="INPUT column holding the report text (matched in any "
                             "case)")

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, value: str | None) -> str | None:
        return parse_delimiter(value)

    @model_validator(mode="after")
    def _replacement_needs_a_file(self) -> LabelConfig:
        if self.replace_vocabulary and not self.vocabulary:
            raise ValueError("--replace-vocabulary needs --vocabulary FILE")
        return self

    def input_format(self) -> InputFormat:
        return InputFormat(self.delimiter, self.id_column, self.text_column)


DEFAULT_BATCH = LabelConfig.model_fields["batch_size"].default
