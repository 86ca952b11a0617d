"""What a training run returns: its model folder, card, epochs, steps, speed and history."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radsim.evaluation.display import card_metric_line, fmt
from radsim.warehouse.card import ModelCard, read_card

from .checkpoint import LAST_FILE, read_checkpoint


@dataclass
class TrainResult:
    model_dir: Path
    model_version: str
    card: ModelCard
    best_epoch: int | None
    epochs_run: int
    steps: int
    stopped: str  # completed | early_stopping | time_limit | max_steps | already_done
    images_per_s: float
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def metrics(self) -> dict[str, Any]:
        return self.card.metrics

    def summary(self) -> str:
        m, b = self.card.metrics, self.card.baseline_metrics.get("untrained_encoder", {})
        line = (f"trained {self.model_version}: {self.epochs_run} epoch(s), {self.steps} steps, "
                f"{self.images_per_s:.0f} images/s, stopped: {self.stopped}")
        if m.get("precision_at_10") is not None:
            # a metric can be too few to judge on a small validation split (no normal film, say): it says so
            line += (f"\n  validation ({m.get('n_items', '?')} images, {m.get('n_patients', '?')} patients, epoch "
                     f"{self.best_epoch}): P@10 {card_metric_line(m, 'precision_at_10')}, untrained "
                     f"{fmt(b.get('precision_at_10'))}; normal AUC {card_metric_line(m, 'normal_auc')}, untrained "
                     f"{fmt(b.get('normal_auc'))}; mean pairwise cosine {fmt(m.get('mean_pairwise_cosine'))}")
        return line + f"\n  model folder: {self.model_dir}"


@dataclass
class TrainProgress:
    """Where a training run stands: what every checkpoint saves, `--resume` continues and the card's history shows."""

    epoch: int = 0  # complete epochs
    batches_done: int = 0  # batches of the current epoch already stepped (a cut epoch resumes there)
    step: int = 0  # optimiser steps
    best_p10: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0  # epochs since the best validation P@10 (early stopping)
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped: str | None = None
    train_seconds: float = 0.0
    images: int = 0
    best_metrics: dict[str, Any] | None = None  # the best epoch's validation metrics

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> TrainProgress:
        """A checkpoint's progress (a plain dict, so that checkpoints stay torch.load(weights_only=True)-safe)."""
        return cls(**{k: v for k, v in saved.items() if k in cls.__dataclass_fields__})

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        if out["best_metrics"] is None:
            del out["best_metrics"]  # as checkpoints have always been written before a best epoch
        return out

    def speed(self) -> dict[str, Any]:
        s = self.train_seconds or 0.0
        return {"images_per_s": round(self.images / s, 1) if s > 0 else None, "train_seconds": round(s, 2),
                "steps": self.step}

    def best(self) -> dict[str, Any]:
        return dict(self.best_metrics or {})

    @property
    def epochs_run(self) -> int:
        return len({h["epoch"] for h in self.history})


@dataclass(frozen=True)
class EpochOutcome:
    """What one (possibly cut) epoch did: its index, whether it ran to the end, its losses, images and time."""

    epoch: int
    complete: bool
    losses: list[float]
    images: int
    seconds: float


def result_of(out_dir: Path, card: ModelCard, prog: TrainProgress, stopped: str, started: float) -> TrainResult:
    return TrainResult(out_dir, card.model_version, card, prog.best_epoch, prog.epochs_run, prog.step, stopped,
                       prog.speed()["images_per_s"] or float("nan"), time.perf_counter() - started, list(prog.history))


def result_from_folder(out_dir: str | Path) -> TrainResult:
    """The TrainResult of a run that rank 0 of a torchrun job finished: its card and last.pt's progress."""
    out_dir = Path(out_dir)
    prog, card = TrainProgress.from_dict(read_checkpoint(out_dir / LAST_FILE)["progress"]), read_card(out_dir)
    return TrainResult(out_dir, card.model_version, card, prog.best_epoch, prog.epochs_run, prog.step,
                       prog.stopped or "completed", prog.speed()["images_per_s"] or float("nan"),
                       float(prog.train_seconds or 0.0), list(prog.history))
