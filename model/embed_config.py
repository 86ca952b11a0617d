"""The embed-and-publish stage's configuration, declared once (radsim.data_contracts.settings).

`radsim publish`'s options, the shard-embedding defaults and the pipeline's embedding step
(`runner.shards_per_task`, `runner.workers`) derive from `EmbedConfig`. It imports no torch, so
`radsim publish --help` stays fast.
"""
from __future__ import annotations

from pydantic import Field

from radsim.data_contracts.settings import Settings

# the options of `radsim publish` that come from this config, in --help order
CLI_FIELDS = ("batch_size", "device", "workers", "shards_per_task", "current")


class EmbedConfig(Settings):
    batch_size: int = Field(256, ge=1, description="images per forward pass")
    device: str | None = Field(None, description="auto (GPU when present), cpu or cuda[:N]; none: auto, and cpu "
                               "for the tasks of --task-runner, so a split run computes like a local CPU run")
    workers: int = Field(2, ge=1, description="task runner workers: threads, processes or local Dask workers")
    shards_per_task: int = Field(1, ge=1, description="shards embedded by one task with --task-runner; results are "
                                 "assembled in manifest order and equal a local run's. Dask workers need MODEL_DIR "
                                 "and SHARDS_DIR at the same path")
    current: bool = Field(True, description="make the published version the current one; --no-current publishes "
                          "beside the current version (to compare models)")

    def device_for(self, mapped: bool) -> str:
        """The device asked for, else CPU for tasks on a runner (like a local CPU run) and auto for one process."""
        return self.device or ("cpu" if mapped else "auto")


DEFAULT_BATCH_SIZE = EmbedConfig.model_fields["batch_size"].default
DEFAULT_WORKERS = EmbedConfig.model_fields["workers"].default  # task runner workers, wherever a runner is made
