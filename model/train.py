"""The training loop: shards -> encoder -> MODEL_DIR (model.pt best, last.pt, model_card.json), DESIGN §8.

`train_embedding_model` is what `radsim train`, the `train_embedding` flow and torchrun
run. In order:

1. Read the shard manifest (image size, vocabulary, key_id, hash) and check it against
   the model being resumed or initialised (`--resume`, a radsim checkpoint as
   `--init-weights`): another vocabulary, image size or backbone is a clear UsageError.
2. Decode the train split (labelled frontal films) into memory when it fits, else stream
   it through webdataset (model/data.py reads, model/feeders.py feeds); the multi-label sampler makes the batches, and
   the batch sequence is a pure function of (seed, epoch).
3. Measure the untrained encoder (and random embeddings) on the validation split: the
   model card's baseline.
4. Train: AdamW, cosine LR with warm-up, gradient clipping; CUDA gets bf16 autocast and
   channels_last, CPU runs fp32. After each epoch: validation P@10 and normal AUC (with
   chance) through radsim.evaluation, model.pt when P@10 improves, last.pt always,
   early stopping on P@10 with `patience`.
5. A non-finite loss stops the run with the step named; last.pt is not overwritten, so
   the last good checkpoint stays.

`--resume` restores weights, optimiser, scheduler, step, the position inside a cut epoch
and the RNG state from last.pt; with the in-memory feeder it reproduces the uninterrupted
run's weights (same seed, CPU). `accumulate=k` sums the gradients of k consecutive batches
of the same sequence per step: one process with accumulate=2 and batch b takes the same
steps as 2 DDP ranks with batch b each.

DDP: `torchrun --nproc-per-node N -m radsim.flows.torchrun --shards ... --out ...` (the
entry point parses `radsim train`'s arguments). nccl on GPU, gloo on CPU; only rank 0
validates and writes.
"""
from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # torchrun/-m entry: before torch is imported (spin-waiting OpenMP threads, §13)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from radsim.data_contracts import UsageError
from radsim.data_contracts.progress import progress_bar
from radsim.evaluation.display import fmt
from radsim.warehouse.card import ModelCard, write_card

from .augment import augmentation
from .checkpoint import BEST_FILE, LAST_FILE, read_checkpoint
from .compatibility import check_checkpoint_fits, is_radsim_checkpoint
from .config import TrainConfig, train_config
from .data import choose_mode, load_split, make_sampler, read_shard_info, split_labels
from .distributed import default_num_threads, init_distributed, shutdown
from .encoders import build_encoder, load_init_weights
from .feeders import MemoryFeeder, StreamFeeder
from .losses import build_loss
from .train_core import (
    DeviceSetup,
    NonFiniteLossError,
    cosine_with_warmup,
    grouped,
    optimizer_step,
    parameter_groups,
    resolve_device,
)
from .train_outcome import end_of_epoch, finish, save_last_checkpoint
from .train_result import EpochOutcome, TrainProgress, TrainResult, result_of
from .train_run import Data, Parts, Run, Start
from .validation import evaluate_split

# every setting's default, declared once in TrainConfig
DEFAULTS = {name: field.get_default(call_default_factory=True) for name, field in TrainConfig.model_fields.items()}


def make_model_version(backbone: str, loss: str, manifest_sha256: str, when: datetime | None = None) -> str:
    """`<backbone>-<loss>-<UTC yyyymmddHHMMSS>-<8 hex of the manifest hash>`: no dots (a webdataset key rule)."""
    when = when or datetime.now(UTC)
    return f"{backbone}-{loss}-{when:%Y%m%d%H%M%S}-{manifest_sha256[:8]}"


def _progress_bar(total: int, enabled: bool, desc: str) -> Any:
    return progress_bar(total, enabled, unit="step", desc=desc)


# ------------------------------------------------------------------------------ the loop
def train_embedding_model(shards_dir: str | Path, out_dir: str | Path, config: TrainConfig | None = None, *,
                          resume: bool = False, progress: bool = True, log: Callable[[str], None] | None = None,
                          **values: Any) -> TrainResult:
    """Train an encoder on SHARDS_DIR's train split into OUT_DIR (see the module docstring).

    `config` (or keyword values, which override it) is a `TrainConfig`; `resume` continues
    OUT_DIR's last.pt; `progress` shows bars and per-epoch lines; `log` receives those lines.
    """
    started = time.perf_counter()
    cfg = train_config(**{**(config.model_dump() if config is not None else {}), **values})
    info = read_shard_info(shards_dir)
    setup = resolve_device(cfg.device)
    ctx = init_distributed(setup.device.type)
    if ctx.backend == "nccl":
        setup = DeviceSetup(torch.device("cuda", ctx.local_rank), setup.amp_dtype, setup.channels_last)
    threads_before = torch.get_num_threads()
    if setup.device.type == "cpu":
        torch.set_num_threads(default_num_threads(ctx.local_world_size, cfg.threads))
    say = (log or (lambda line: print(line, file=sys.stderr, flush=True))) if ctx.is_main and (progress or log) \
        else (lambda line: None)
    out_dir = Path(out_dir)
    run = Run(cfg, out_dir, info, setup, ctx, say, resume, progress, started)
    try:
        return _train(run)
    finally:
        torch.set_num_threads(threads_before)
        shutdown(ctx)


def _train(run: Run) -> TrainResult:
    start = _open(run)
    data = _data(run, start.size)
    parts = _parts(run, start, data)
    card, prog = _card_and_progress(run, start, data, parts)
    if prog.stopped == "early_stopping" or prog.epoch >= run.cfg.epochs:
        run.say(f"{run.out_dir}: training already finished ({prog.stopped or 'completed'}); nothing to resume")
        return result_of(run.out_dir, card, prog, "already_done", run.started)
    settings = _settings(run, start, data, parts)
    _loop(run, data, parts, card, prog, settings)
    return finish(run, data, parts, card, prog, settings)


def _open(run: Run) -> Start:
    """Check the folder and any checkpoint against the shards and the config, before reading any data."""
    cfg, info = run.cfg, run.info
    image_size = cfg.image_size
    state = None
    if run.resume:
        if not run.last_path.is_file():
            raise UsageError(f"--resume: no {LAST_FILE} in {run.out_dir} (train without --resume first)")
        state = read_checkpoint(run.last_path)
        check_checkpoint_fits(
            state["card"], info, cfg.backbone, cfg.embedding_dim, image_size, "the model being resumed", run.last_path
        )
        image_size = int(state["card"]["image_size"])
        if state["card"].get("data_manifest_sha256") != info.manifest_sha256:
            run.say(f"note: the shards changed since {run.last_path} was written (manifest hash differs); "
                    "the data order will not match the interrupted run")
    elif run.last_path.exists():
        raise UsageError(f"{run.out_dir} already holds a model ({LAST_FILE}): pass --resume to continue it, "
                         "or choose a new --out")
    init_payload = None  # a radsim checkpoint as --init-weights: checked before any data is read
    if cfg.init_weights and state is None:
        path = Path(cfg.init_weights)
        if not path.exists():
            raise UsageError(f"--init-weights {path}: no such file")
        if is_radsim_checkpoint(path):
            init_payload = read_checkpoint(path / BEST_FILE if path.is_dir() else path)
            check_checkpoint_fits(
                init_payload["card"], info, cfg.backbone, cfg.embedding_dim, image_size, "--init-weights", path
            )
            image_size = int(init_payload["card"]["image_size"])
    return Start(state, init_payload, int(image_size or info.image_size))


def _data(run: Run, size: int) -> Data:
    """The training feeder (memory or stream) and, on rank 0, the validation split."""
    cfg, info, ctx = run.cfg, run.info, run.ctx
    train_labels = split_labels(info, "train", views=cfg.views)
    if train_labels.shape[0] < cfg.batch_size:
        raise UsageError(f"{info.shards_dir} has {train_labels.shape[0]} labelled training images "
                         f"({'/'.join(cfg.views) if cfg.views else 'all views'}), fewer than one batch of "
                         f"{cfg.batch_size}")
    mode = choose_mode(cfg.data, train_labels.shape[0], size)
    try:
        if mode == "memory":
            train = load_split(info, "train", views=cfg.views, image_size=size)
            sampler = make_sampler(train.labels, cfg.batch_size, seed=cfg.seed, rank=ctx.rank,
                                   world_size=ctx.world_size, accumulate=cfg.accumulate)
            feeder: MemoryFeeder | StreamFeeder = MemoryFeeder(train, sampler)
        else:
            feeder = StreamFeeder(info, train_labels, cfg.batch_size, seed=cfg.seed, rank=ctx.rank,
                                  world_size=ctx.world_size, accumulate=cfg.accumulate, image_size=size,
                                  workers=cfg.loader_workers, pin_memory=run.setup.device.type == "cuda")
    except ValueError as exc:  # the sampler: no finding shared by two images, batch larger than the data
        raise UsageError(f"cannot batch the training split of {info.shards_dir}: {exc}") from None
    val = load_split(info, "val", views=cfg.views, image_size=size) if ctx.is_main else None
    enough = ctx.broadcast(val is not None and val.n_patients >= max(1, cfg.selection_min_patients))
    normal_index = info.findings.index("no_finding") if "no_finding" in info.findings else None
    return Data(feeder, val, int(train_labels.shape[0]), len(feeder) // cfg.accumulate, normal_index, bool(enough))


def _parts(run: Run, start: Start, data: Data) -> Parts:
    """Encoder (initialised or restored), loss, AdamW and the warm-up + cosine schedule."""
    cfg = run.cfg
    torch.manual_seed(cfg.seed)
    model = build_encoder(cfg.backbone, embedding_dim=cfg.embedding_dim)
    init_note = None
    if start.init_payload is not None:
        model.load_state_dict(start.init_payload["state_dict"])
        init_note = f"radsim checkpoint {cfg.init_weights} ({start.init_payload['card'].get('model_version')})"
    elif cfg.init_weights and start.state is None:
        init_note = load_init_weights(model, cfg.init_weights).summary()
    model = run.setup.prepare(model)
    optimizer = torch.optim.AdamW(parameter_groups(model, cfg.lr, cfg.backbone_lr), lr=cfg.lr,
                                  weight_decay=cfg.weight_decay)
    scheduler = cosine_with_warmup(
        optimizer, cfg.epochs * data.steps_per_epoch, round(cfg.warmup * data.steps_per_epoch)
    )
    if start.state is not None:
        model.load_state_dict(start.state["state_dict"])
        optimizer.load_state_dict(start.state["optimizer"])
        scheduler.load_state_dict(start.state["scheduler"])
        torch.set_rng_state(start.state["rng_torch"])
    return Parts(model, build_loss(cfg.loss, **cfg.loss_options), optimizer, scheduler, augmentation(cfg.augment),
                 init_note)


def _card_and_progress(run: Run, start: Start, data: Data, parts: Parts) -> tuple[ModelCard, TrainProgress]:
    """The resumed card and progress, or a new card with the untrained-encoder and random baselines."""
    if start.state is not None:
        return ModelCard.from_dict(start.state["card"]), TrainProgress.from_dict(start.state["progress"])
    cfg, info = run.cfg, run.info
    card = ModelCard(
        model_version=make_model_version(cfg.backbone, cfg.loss, info.manifest_sha256), backbone=cfg.backbone,
        embedding_dim=cfg.embedding_dim, image_size=start.size, loss=cfg.loss, vocabulary_name=info.vocabulary_name,
        vocabulary_version=info.vocabulary_version, findings=list(info.findings), key_id=info.key_id,
        data_manifest_sha256=info.manifest_sha256, created_at=datetime.now(UTC).isoformat(timespec="seconds"))
    prog = TrainProgress()
    if run.ctx.is_main:
        untrained = evaluate_split(parts.model, data.val, run.setup, data.normal_index, intervals=True)
        card.baseline_metrics = {"untrained_encoder": untrained,
                                 "random_embedding": untrained.pop("random_embedding", {})}
    return card, prog


def _settings(run: Run, start: Start, data: Data, parts: Parts) -> dict[str, Any]:
    """What the model card records of the run, beside the config."""
    setup = run.setup
    return {
        **run.cfg.model_dump(mode="json"),
        "source_image_size": run.info.image_size,
        "world_size": run.ctx.world_size,
        "device": str(setup.device),
        "amp": str(setup.amp_dtype).replace("torch.", "") if setup.amp_dtype else None,
        "channels_last": setup.channels_last,
        "num_threads": torch.get_num_threads(),
        "threads_chosen_from": "--threads" if run.cfg.threads else "cpu affinity",
        "data": data.feeder.mode,
        "steps_per_epoch": data.steps_per_epoch,
        "train_images": data.train_images,
        "val_images": len(data.val) if data.val is not None else None,
        "val_patients": data.val.n_patients if data.val is not None else None,
        "model_selection": ("best validation P@10" if data.select_on_val
                            else f"last epoch (fewer than {run.cfg.selection_min_patients} validation patients)"),
        "init_weights": parts.init_note,
    }


def _loop(run: Run, data: Data, parts: Parts, card: ModelCard, prog: TrainProgress, settings: dict[str, Any]) -> None:
    """Epochs of optimiser steps; each epoch ends with validation, the best model and last.pt."""
    cfg, ctx = run.cfg, run.ctx
    net = parts.model
    if ctx.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(parts.model, device_ids=[ctx.local_rank] if ctx.backend == "nccl" else None)

    def save_last() -> None:
        if ctx.is_main:
            card.training = {**settings, **prog.speed(), "stopped": prog.stopped, "history": prog.history}
            save_last_checkpoint(run, parts, card, prog)
            write_card(run.out_dir, card)

    ctx.barrier()  # every rank has checked the folder before rank 0 writes to it
    if prog.step == 0 and not run.last_path.exists():
        run.out_dir.mkdir(parents=True, exist_ok=True)
        save_last()  # step 0: there is always a last good checkpoint
        run.say(f"training {card.model_version} on {settings['train_images']} images ({settings['data']}, "
                f"{data.steps_per_epoch} steps/epoch, {settings['num_threads']} thread(s), {run.setup.device}, "
                f"augment {cfg.augment}); untrained validation P@10 "
                f"{fmt(card.baseline_metrics.get('untrained_encoder', {}).get('precision_at_10'))}")
    else:
        run.say(f"resuming {card.model_version} at epoch {prog.epoch + 1}, step {prog.step}")
    deadline = time.perf_counter() + cfg.max_minutes * 60 if cfg.max_minutes else None
    start_step, stop = prog.step, None
    while prog.epoch < cfg.epochs and stop is None:
        epoch = prog.epoch
        losses, n_img, seconds, stop = _epoch(run, data, parts, net, prog, epoch, start_step, deadline)
        prog.train_seconds += seconds
        prog.images += n_img
        complete = prog.batches_done >= len(data.feeder)
        stop = end_of_epoch(parts.model, data, run, prog, EpochOutcome(epoch, complete, losses, n_img, seconds),
                            card) or stop
        if complete:
            prog.epoch, prog.batches_done = epoch + 1, 0
        prog.stopped = stop
        save_last()
        if stop is None and prog.epoch >= cfg.epochs:
            prog.stopped = "completed"
    prog.stopped = prog.stopped or "completed"


def _epoch(run: Run, data: Data, parts: Parts, net: torch.nn.Module, prog: TrainProgress, epoch: int,
           start_step: int, deadline: float | None) -> tuple[list[float], int, float, str | None]:
    """One (possibly resumed, possibly cut) epoch: (losses, images, seconds, why it stopped early)."""
    cfg, ctx, setup = run.cfg, run.ctx, run.setup
    skip = prog.batches_done
    bar = _progress_bar(data.steps_per_epoch, run.progress and ctx.is_main, f"epoch {epoch + 1}/{cfg.epochs}")
    bar.update(skip // cfg.accumulate)
    t0, n_img, losses, stop = time.perf_counter(), 0, [], None
    try:
        for micro in grouped(data.feeder.epoch(epoch, skip=skip), cfg.accumulate):
            step = prog.step + 1
            try:
                value = optimizer_step(net, parts, micro, setup, step=step, clip_norm=cfg.clip_norm, ctx=ctx,
                                       seed=cfg.seed)
            except NonFiniteLossError as exc:
                raise NonFiniteLossError(
                    f"{exc} (epoch {epoch + 1}); training stopped. The last good checkpoint is kept: "
                    f"{run.last_path} (step {_saved_step(run.last_path)})") from None
            prog.step, prog.batches_done = step, prog.batches_done + cfg.accumulate
            n_img += sum(int(x.shape[0]) for x, _ in micro) * ctx.world_size
            losses.append(value)
            bar.update(1)
            if run.progress:
                bar.set_postfix(loss=f"{value:.4f}", img_s=f"{n_img / max(time.perf_counter() - t0, 1e-9):.0f}")
            if cfg.max_steps is not None and step - start_step >= cfg.max_steps:
                stop = "max_steps"
            elif deadline is not None and ctx.any(time.perf_counter() >= deadline):
                stop = "time_limit"
            if stop:
                break
    finally:
        bar.close()
    if setup.device.type == "cuda":
        torch.cuda.synchronize(setup.device)
    return losses, n_img, time.perf_counter() - t0, stop


def _saved_step(path: Path) -> Any:
    try:
        return read_checkpoint(path)["progress"]["step"]
    except Exception:  # noqa: BLE001 - only for the message
        return "?"

