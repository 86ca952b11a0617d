"""A training run's state, phase by phase: its fixed context, where it starts, its data and its parts.

radsim.model.train hands these between its phase functions (open → data → parts → loop → finish).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checkpoint import BEST_FILE, LAST_FILE
from .config import TrainConfig
from .data import ShardInfo, SplitData
from .distributed import DistContext
from .feeders import MemoryFeeder, StreamFeeder
from .train_core import DeviceSetup, Parts  # noqa: F401 - Parts is part of a run's state


@dataclass
class Run:
    """One training run's fixed context, handed to each phase."""

    cfg: TrainConfig
    out_dir: Path
    info: ShardInfo
    setup: DeviceSetup
    ctx: DistContext
    say: Callable[[str], None]
    resume: bool
    progress: bool
    started: float

    @property
    def last_path(self) -> Path:
        return self.out_dir / LAST_FILE

    @property
    def best_path(self) -> Path:
        return self.out_dir / BEST_FILE


@dataclass
class Start:
    """Where the run starts: a resumed state, a radsim checkpoint to initialise from, the training size."""

    state: dict[str, Any] | None
    init_payload: dict[str, Any] | None
    size: int


@dataclass
class Data:
    feeder: MemoryFeeder | StreamFeeder
    val: SplitData | None
    train_images: int
    steps_per_epoch: int
    normal_index: int | None
    select_on_val: bool  # early stopping and best-epoch choice (enough validation patients)


