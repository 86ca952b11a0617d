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


def best_metrics(prog: dict) -> dict[str, Any]:
    return dict(prog.get("best_metrics") or {})


def speed(prog: dict) -> dict[str, Any]:
    s = prog.get("train_seconds") or 0.0
    return {"images_per_s": round(prog["images"] / s, 1) if s > 0 else None, "train_seconds": round(s, 2),
            "steps": prog["step"]}


def result_of(out_dir: Path, card: ModelCard, prog: dict, stopped: str, started: float) -> TrainResult:
    return TrainResult(out_dir, card.model_version, card, prog.get("best_epoch"),
                       len({h["epoch"] for h in prog["history"]}), prog["step"], stopped,
                       speed(prog)["images_per_s"] or float("nan"), time.perf_counter() - started,
                       list(prog["history"]))


def result_from_folder(out_dir: str | Path) -> TrainResult:
    """The TrainResult of a run that rank 0 of a torchrun job finished: its card and last.pt's progress."""
    out_dir = Path(out_dir)
    state = read_checkpoint(out_dir / LAST_FILE)
    prog, card = state["progress"], read_card(out_dir)
    return TrainResult(out_dir, card.model_version, card, prog.get("best_epoch"),
                       len({h["epoch"] for h in prog["history"]}), prog["step"], prog.get("stopped") or "completed",
                       speed(prog)["images_per_s"] or float("nan"), float(prog.get("train_seconds") or 0.0),
                       list(prog["history"]))
