"""The outcome of an epoch and of the run: validation, the best model kept, the final checkpoint and card.

radsim.model.train runs the loop; these two steps decide what the loop keeps. Only rank 0
validates and writes; every rank gets the early-stopping decision (DESIGN §8).
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from radsim.evaluation.display import fmt
from radsim.warehouse.card import ModelCard, write_card

from .checkpoint import read_checkpoint, save_checkpoint
from .encoders import build_encoder
from .train_result import EpochOutcome, TrainProgress, TrainResult, result_of
from .train_run import Data, Parts, Run
from .validation import evaluate_split


def save_last_checkpoint(run: Run, parts: Parts, card: ModelCard, prog: TrainProgress) -> None:
    """last.pt: the weights with everything `--resume` needs (optimiser, scheduler, RNG, progress)."""
    save_checkpoint(run.last_path, parts.model, card, optimizer=parts.optimizer.state_dict(),
                    scheduler=parts.scheduler.state_dict(), rng_torch=torch.get_rng_state(), progress=prog.as_dict())


def finish(run: Run, data: Data, parts: Parts, card: ModelCard, prog: TrainProgress,
           settings: dict[str, Any]) -> TrainResult:
    """The model: the best epoch's weights (or the last), with the final card and its validation intervals."""
    cfg, ctx = run.cfg, run.ctx
    stopped = prog.stopped
    if ctx.is_main:
        final = parts.model
        if data.select_on_val and run.best_path.exists():
            final = build_encoder(cfg.backbone, embedding_dim=cfg.embedding_dim)
            final.load_state_dict(read_checkpoint(run.best_path)["state_dict"])
        elif data.val is not None:  # the last epoch is the model: its metrics are the card's
            prog.best_metrics = {**(prog.history[-1] if prog.history else {}), "split": "val", "epoch": prog.epoch}
            prog.best_epoch = prog.epoch
        judged = evaluate_split(final, data.val, run.setup, data.normal_index, intervals=True)
        judged.pop("random_embedding", None)  # the same draws as the card's baseline_metrics
        card.metrics = {**prog.best(), **judged}
        card.training = {**settings, **prog.speed(), "stopped": stopped, "history": prog.history,
                         "seconds_total": round(time.perf_counter() - run.started, 2)}
        save_last_checkpoint(run, parts, card, prog)
        save_checkpoint(run.best_path, final, card)
        write_card(run.out_dir, card)
    ctx.barrier()
    return result_of(run.out_dir, card, prog, stopped, run.started)


def end_of_epoch(model: torch.nn.Module, data: Data, run: Run, prog: TrainProgress, done: EpochOutcome,
                 card: ModelCard) -> str | None:
    """Validate (rank 0), keep the best model, decide early stopping; every rank gets the decision.

    With fewer validation patients than `selection_min_patients`, the epochs are still validated for
    the record, but neither early stopping nor the best-epoch choice listens to them.
    """
    stop = None
    if run.ctx.is_main:
        metrics = evaluate_split(model, data.val, run.setup, data.normal_index)
        p10 = metrics.get("precision_at_10")
        row = {"epoch": done.epoch + 1, "complete": done.complete, "step": prog.step,
               "loss": float(np.mean(done.losses)) if done.losses else None,
               "images_per_s": round(done.images / done.seconds, 1) if done.seconds > 0 else None,
               **{k: metrics.get(k) for k in ("precision_at_10", "normal_auc")}}
        prog.history.append(row)
        improved = data.select_on_val and p10 is not None and (prog.best_p10 is None or p10 > prog.best_p10 + 1e-9)
        if improved:
            prog.best_p10, prog.best_epoch, prog.bad_epochs = p10, done.epoch + 1, 0
            prog.best_metrics = {**metrics, "split": "val", "epoch": done.epoch + 1}
            card.metrics = prog.best()
            save_checkpoint(run.best_path, model, card)
        elif data.select_on_val and p10 is not None and done.complete:
            prog.bad_epochs += 1
        if data.select_on_val and run.cfg.patience and prog.bad_epochs >= run.cfg.patience:
            stop = "early_stopping"
        run.say(f"epoch {done.epoch + 1}: loss {fmt(row['loss'])}, {fmt(row['images_per_s'], '.0f')} images/s, "
                f"val P@10 {fmt(p10)}, normal AUC {fmt(metrics.get('normal_auc'))}{' *' if improved else ''}")
    return run.ctx.broadcast(stop)
