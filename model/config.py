"""The training configuration, declared once (radsim.data_contracts.settings).

`radsim train`'s options, the torchrun argv each rank is started with, the pipeline's `[model]`
section and the model card's record of what was run all derive from `TrainConfig`. It imports
no torch, so `radsim train --help` stays fast.
"""
from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import Field, field_validator

from radsim.data_contracts.settings import Settings
from radsim.imaging.reader import FRONTAL

Loss = Literal["ml2", "ml2plus", "triplet", "ms"]
Backbone = Literal["small", "resnet18", "resnet50", "densenet121"]
# the options of `radsim train` that come from this config, in --help order
CLI_FIELDS = (
    "loss", "backbone", "epochs", "image_size", "embedding_dim", "device", "batch_size", "lr", "weight_decay",
    "backbone_lr", "warmup", "patience", "selection_min_patients", "augment", "seed", "init_weights", "max_minutes",
    "threads", "data", "loader_workers", "accumulate", "max_steps",
)


class TrainConfig(Settings):
    loss: Loss = Field("ml2", description="ml2: the paper's multi-label loss; ml2plus: radsim's noise-robust "
                       "variant; triplet, ms: baselines")
    backbone: Backbone = Field("small", description="encoder; small trains at hundreds of images/s on a CPU")
    epochs: int = Field(40, ge=1, description="maximum epochs")
    image_size: int | None = Field(None, ge=16, description="training size in px; none: the shards' size (another "
                                   "value resizes on the fly)")
    embedding_dim: int = Field(128, ge=1, description="embedding size D")
    device: str = Field("auto", description="auto (CUDA with bf16 + channels_last when present, else CPU fp32), cpu, "
                        "cuda[:N]")
    batch_size: int = Field(64, ge=2, description="images per step and process")
    lr: float = Field(2e-3, gt=0, description="peak learning rate of AdamW")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay")
    backbone_lr: float = Field(1.0, ge=0, le=1, description="the backbone's learning rate as a fraction of --lr "
                               "(the projection always gets --lr); 0 freezes the backbone's weights")
    warmup: float = Field(1.0, ge=0, description="linear warm-up before the cosine decay, in epochs")
    patience: int = Field(10, ge=0, description="stop after this many epochs without a better validation P@10 "
                          "(0: never)")
    selection_min_patients: int = Field(0, ge=0, description="early stopping and best-epoch choice only with at "
                                        "least this many validation patients; below it the whole schedule runs and "
                                        "the last epoch is the model (0: always; on nih-dev, selecting on a "
                                        "10-patient split beat the last epoch). Not the promotion gates' minimum "
                                        "(model.min_val_patients in radsim.toml)")
    augment: Literal["none", "mild", "chest", "strong"] = Field(
        "chest",
        description="train-time augmentation: chest = small affine moves, crops, brightness/contrast/gamma, no flips",
    )
    seed: int = Field(0, description="seed for weights, data order and augmentation")
    init_weights: str | None = Field(None, description="start from a local state dict with torchvision key names, "
                                     "or a radsim model folder/checkpoint")
    max_minutes: float | None = Field(None, gt=0, description="stop training after M minutes (the cut epoch is "
                                      "validated and saved; --resume continues it)")
    threads: int | None = Field(None, ge=1, description="torch CPU threads per process; none: the cores this process "
                                "may use (its CPU affinity), never the machine's load")
    data: Literal["auto", "memory", "stream"] = Field("auto", description="decode the train split into memory once, "
                                                      "or stream it from the shards")
    loader_workers: int | None = Field(None, ge=0, description="DataLoader worker processes of the streaming "
                                       "feeder; none: up to 4, one per core left")
    accumulate: int = Field(1, ge=1, description="sum gradients over K batches per step (1 process with K=N takes "
                            "the steps of N DDP ranks)")
    max_steps: int | None = Field(None, ge=1, description="stop after N optimiser steps (smoke tests)")
    clip_norm: float | None = Field(1.0, gt=0, description="gradient-norm clipping")
    views: tuple[str, ...] | None = Field(FRONTAL, description="views trained on (none: all)")
    loss_options: dict[str, Any] = Field(default_factory=dict, description="extra loss arguments")

    @field_validator("init_weights", mode="before")
    @classmethod
    def _path_as_text(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value


LEGACY_NAMES = {"num_threads": "threads"}  # keyword names of earlier releases


def train_config(**values: Any) -> TrainConfig:
    """A TrainConfig from keyword values (earlier keyword names accepted; patience None = never)."""
    from radsim.data_contracts.settings import build

    values = {LEGACY_NAMES.get(k, k): v for k, v in values.items()}
    if "patience" in values and values["patience"] is None:
        values["patience"] = 0
    return build(TrainConfig, values, "training")


def changed_fields(config: TrainConfig) -> dict[str, Any]:
    """The fields of `config` that differ from the defaults: what a rank's command line must carry."""
    defaults = TrainConfig()
    return {name: value for name, value in config if value != getattr(defaults, name)}


def rank_argv(shards: str, out: str, kw: dict) -> list[str]:
    """`radsim train` arguments that give back `kw` when parsed: what each torchrun rank runs.

    `kw` holds TrainConfig fields plus `resume` and `progress` (train_embedding_model's keywords).
    """
    from radsim.data_contracts import settings
    from radsim.data_contracts.errors import UsageError

    fields = {k: v for k, v in kw.items() if k not in ("resume", "progress")}
    unknown = set(fields) - set(CLI_FIELDS)
    if unknown:
        raise UsageError(f"training options {sorted(unknown)} cannot be passed to torchrun ranks")
    config = train_config(**fields)
    given = [f for f in CLI_FIELDS if f in fields]
    argv = ["--shards", str(shards), "--out", str(out), *settings.to_argv(config, given)]
    if kw.get("resume"):
        argv.append("--resume")
    if not kw.get("progress", True):
        argv.append("--no-progress")
    return argv

DEFAULT_EMBEDDING_DIM = TrainConfig.model_fields["embedding_dim"].default  # D, wherever an encoder is built
