"""`RunConfig`: a scheduled run's settings, composed of the stage configs (DESIGN §4).

Each radsim.toml table is a section model. Where a setting is a stage's, the section takes
that stage config's field (its type, help and bounds) through `settings.field_of`; only what
the pipeline itself decides (paths, the runner, the gates, the schedule) is declared here. The
TOML keys, the `RADSIM_<SECTION>_<KEY>` variables, `config.json` and the stage configs the
flows run with all derive from these models. Constructing a RunConfig validates every value,
the stage configs' own rules included.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from radsim.data_contracts import UsageError, settings
from radsim.data_contracts.reconcile import QuarantineCeiling
from radsim.data_contracts.settings import Settings, field_of
from radsim.imaging.config import ShardOptions
from radsim.model.config import TrainConfig
from radsim.model.embed_config import EmbedConfig
from radsim.model.launch import MIN_PROCESSES, LaunchSpec
from radsim.nlp.config import LabelConfig

TaskRunner = Literal["threads", "processes", "dask"]
TASK_RUNNERS: tuple[str, ...] = TaskRunner.__args__  # type: ignore[attr-defined]


def check_cron(expr: str, key: str = "schedule.cron") -> str:
    """A cron string that does not parse is a usage error now, not a schedule that never fires."""
    from cronsim import CronSim, CronSimError

    try:
        CronSim(expr, datetime(2026, 1, 1))
    except (CronSimError, ValueError, IndexError) as exc:
        raise UsageError(f"{key} {expr!r} is not a valid cron string (minute hour day month weekday): {exc}") \
            from None
    return expr


def _path(help_text: str) -> Any:
    return Field(None, description=f"{help_text} (a path or an fsspec URI)")


class PathsSection(Settings):
    """[paths]: where the run reads and writes."""

    inbox: str | None = _path("exam folders or an exams manifest")
    warehouse: str | None = _path("the warehouse the run keeps")
    truth: str | None = Field(None, description="validated labels (labels contract) to evaluate against; none: "
                              "evaluation skipped")
    vocabulary: str | None = field_of(LabelConfig, "vocabulary")[1]


ImagingSection = settings.section("ImagingSection", "[imaging]: the shard stage's settings.", {
    "image_size": field_of(ShardOptions, "image_size"),
    "compact_after": field_of(ShardOptions, "compact_after"),
})

ModelSection = settings.section(
    "ModelSection",
    "[model]: training and promotion.",
    {
        "backbone": field_of(TrainConfig, "backbone"),
        "loss": field_of(TrainConfig, "loss"),
        # a scheduled CPU run trains the small CNN at 128 px for at most 5 minutes (DESIGN §8)
        "image_size": field_of(TrainConfig, "image_size", default=128),
        "max_minutes": field_of(TrainConfig, "max_minutes", default=5.0),
        "max_steps": field_of(TrainConfig, "max_steps"),
        "batch_size": field_of(
            TrainConfig,
            "batch_size",
            optional=True,
            default=None,
            description="images per step and process; none: training's default, shrunk to fit "
            "a first cohort too small for it",
        ),
        "seed": field_of(TrainConfig, "seed"),
        "nproc_per_node": (
            int,
            Field(
                LaunchSpec().nproc_per_node,
                ge=MIN_PROCESSES,
                description="more than 1: train with DDP under torchrun, one process per GPU",
            ),
        ),
        "min_val_patients": (
            int,
            Field(30, ge=0, description="the promotion gates decide only with this many validation patients"),
        ),
        "force_promote": (
            bool,
            Field(False, description="publish or promote a model the gates refuse; recorded as forced"),
        ),
    },
)

LabelsSection = settings.section("LabelsSection", "[labels]: the label stage's site settings.", {
    "certainty_threshold": field_of(LabelConfig, "certainty_threshold"),
})

RunnerSection = settings.section("RunnerSection", "[runner]: where the CPU stages' tasks run.", {
    "task_runner": (TaskRunner, Field("threads", description="threads, processes or dask")),
    "workers": field_of(EmbedConfig, "workers"),
    "dask_address": (str | None, Field(None, description="Dask scheduler, tcp://HOST:PORT")),
    "label_batch_size": field_of(LabelConfig, "batch_size"),
    "decode_batch_size": field_of(ShardOptions, "batch_size"),
    "shards_per_task": field_of(EmbedConfig, "shards_per_task"),
})


class PublishSection(Settings):
    """[publish]: what stays published."""

    keep_versions: int = Field(0, ge=0, description="after each publication keep the N versions first published "
                               "last and the current one; 0 keeps every version")


class ScheduleSection(Settings):
    """[schedule]: when the deployments run. The one place their cron strings are declared.

    `radsim deploy` gives them to Prefect (deploy/prefect.yaml names them as {{ $RADSIM_CRON }},
    {{ $RADSIM_TRAIN_CRON }} and {{ $RADSIM_SCHEDULE_TIMEZONE }}; `schedule_env` fills them).
    """

    cron: str = Field("0 2 * * *", description="when the pipeline deployment runs: a cron string (minute hour day "
                      "month weekday)")
    train_cron: str = Field("0 3 * * 0", description="when the train deployment retrains: a cron string")
    timezone: str = Field("UTC", description="the time zone both cron strings are read in (an IANA name)")

    @field_validator("cron", "train_cron")
    @classmethod
    def _parses(cls, value: str, info: ValidationInfo) -> str:
        return check_cron(value, f"schedule.{info.field_name}")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise UsageError(f"schedule.timezone {value!r} is not an IANA time zone name (UTC, Europe/Paris...)") \
                from None
        return value

    def schedule_env(self) -> dict[str, str]:
        """The variables deploy/prefect.yaml's schedules read (Prefect fills {{ $NAME }} from the environment)."""
        return {
            "RADSIM_CRON": self.cron,
            "RADSIM_TRAIN_CRON": self.train_cron,
            "RADSIM_SCHEDULE_TIMEZONE": self.timezone,
        }


class QuarantineSection(Settings):
    """[quarantine]: how much refused input fails a run."""

    max_fraction: float = Field(QuarantineCeiling.max_fraction, gt=0, le=1,
                                description="a stage that refuses more of a run's input fails the run")
    min_count: int = Field(QuarantineCeiling.min_count, ge=0, description="fewer refusals than this never fail it")


SECTIONS: dict[str, type[Settings]] = {
    "paths": PathsSection, "labels": LabelsSection, "imaging": ImagingSection, "model": ModelSection,
    "runner": RunnerSection,
    "publish": PublishSection, "schedule": ScheduleSection, "quarantine": QuarantineSection,
}
# the short variable names a deployment may use instead of RADSIM_<SECTION>_<KEY>
ENV_ALIASES = {"paths.inbox": "RADSIM_INBOX", "paths.warehouse": "RADSIM_WAREHOUSE", "paths.truth": "RADSIM_TRUTH",
               "paths.vocabulary": "RADSIM_VOCABULARY", "imaging.image_size": "RADSIM_IMAGE_SIZE",
               "runner.task_runner": "RADSIM_TASK_RUNNER", "runner.workers": "RADSIM_WORKERS",
               "runner.dask_address": "RADSIM_DASK_ADDRESS", "schedule.cron": "RADSIM_CRON",
               "schedule.train_cron": "RADSIM_TRAIN_CRON"}


class RunConfig(Settings):
    """Every setting of a run, by section; `sources` says where each dotted key's value came from."""

    paths: PathsSection = Field(default_factory=PathsSection)
    labels: LabelsSection = Field(default_factory=LabelsSection)  # type: ignore[valid-type]
    imaging: ImagingSection = Field(default_factory=ImagingSection)  # type: ignore[valid-type]
    model: ModelSection = Field(default_factory=ModelSection)  # type: ignore[valid-type]
    runner: RunnerSection = Field(default_factory=RunnerSection)  # type: ignore[valid-type]
    publish: PublishSection = Field(default_factory=PublishSection)
    schedule: ScheduleSection = Field(default_factory=ScheduleSection)
    quarantine: QuarantineSection = Field(default_factory=QuarantineSection)
    sources: dict[str, str] = Field(default_factory=dict, description="dotted key → default, radsim.toml, "
                                    "environment or command line")

    @model_validator(mode="after")
    def _stage_rules(self) -> RunConfig:
        """The stage configs' own rules (compact_after is never 1, say) hold for the sections too."""
        self.shard_options()
        self.train_config()
        return self

    @classmethod
    def from_flat(cls, values: Mapping[str, Any], sources: Mapping[str, str] | None = None,
                  origin: str = "configuration") -> RunConfig:
        nested: dict[str, dict[str, Any]] = {}
        for key, value in values.items():
            section, _, name = key.partition(".")
            nested.setdefault(section, {})[name] = value
        return settings.build(cls, {**nested, "sources": dict(sources or {})}, origin)

    def flat(self) -> dict[str, Any]:
        """{"section.key": value} for every setting: what config.json records."""
        return {f"{name}.{key}": value for name in SECTIONS for key, value in getattr(self, name).model_dump().items()}

    def updated(self, values: Mapping[str, Any], origin: str = "caller") -> RunConfig:
        """This configuration with some dotted keys set (validated again)."""
        current = self.flat()
        unknown = sorted(set(values) - set(current))
        if unknown:
            raise UsageError(f"unknown configuration key(s) {unknown}")
        return RunConfig.from_flat({**current, **values}, {**self.sources, **{k: origin for k in values}})

    def shard_options(self) -> ShardOptions:
        return settings.build(ShardOptions, self.imaging.model_dump(), "configuration [imaging]")

    def training_options(self) -> dict[str, Any]:
        """The [model] settings training takes, as `train_embedding_model` keywords (unset ones left out)."""
        wanted = ("backbone", "loss", "image_size", "max_minutes", "max_steps", "batch_size", "seed")
        return {key: value for key, value in self.model.model_dump(include=set(wanted)).items() if value is not None}

    def train_config(self) -> TrainConfig:
        return settings.build(TrainConfig, self.training_options(), "configuration [model]")

    def launch_options(self) -> dict[str, Any] | None:
        """model.nproc_per_node > 1 → the torchrun layout for train_embedding (radsim.model.launch), else None."""
        n = self.model.nproc_per_node
        return {"nproc_per_node": n} if n > 1 else None

    def label_config(self, vocabulary: str | None, workers: int) -> LabelConfig:
        """The label stage's settings for `vocabulary` (runner.workers when the batches are mapped)."""
        return LabelConfig(vocabulary=vocabulary, workers=self.runner.workers if self.mapped else workers,
                           batch_size=self.runner.label_batch_size, certainty_threshold=self.labels.certainty_threshold)

    def embed_config(self) -> EmbedConfig:
        return EmbedConfig(workers=self.runner.workers, shards_per_task=self.runner.shards_per_task)

    def force_source(self) -> str | None:
        """Where `model.force_promote` came from, as the gate record names it; None when it is off."""
        if not self.model.force_promote:
            return None
        origin = self.sources.get("model.force_promote", "default")
        return {"command line": "--force-promote", "radsim.toml": "model.force_promote in radsim.toml",
                "environment": "model.force_promote in the environment"}.get(origin, f"model.force_promote ({origin})")

    def quarantine_ceiling(self) -> QuarantineCeiling:
        return QuarantineCeiling(self.quarantine.max_fraction, self.quarantine.min_count)

    @property
    def mapped(self) -> bool:
        """Do the CPU stages run as tasks on a runner (not in this process)?"""
        return self.runner.task_runner != "threads" or bool(self.runner.dask_address)


def schema() -> dict[str, tuple[Any, Any]]:
    """dotted key → (base type, default), derived from the section models."""
    out = {}
    for name, model in SECTIONS.items():
        for key, field in model.model_fields.items():
            base, _ = settings.scalar_type(field.annotation)
            out[f"{name}.{key}"] = (str if base not in (bool, int, float) else base,
                                    field.get_default(call_default_factory=True))
    return out
