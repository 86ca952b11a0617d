"""The training loop: shards -> encoder -> MODEL_DIR (model.pt best, last.pt, model_card.json), DESIGN §8.

`train_embedding_model` is what `radsim train`, the `train_embedding` flow and torchrun
run. In order:

1. Read the shard manifest (image size, vocabulary, key_id, hash) and check it against
   the model being resumed or initialised (`--resume`, a radsim checkpoint as
   `--init-weights`): another vocabulary, image size or backbone is a clear UsageError.
2. Decode the train split (labelled frontal films) into memory when it fits, else stream
   it through webdataset (model/data.py); the multi-label sampler makes the batches, and
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

DDP: `torchrun --nproc-per-node N -m radsim.model.train --shards ... --out ...` (this
module's entry point is `radsim train`'s parser). nccl on GPU, gloo on CPU; only rank 0
validates and writes.
"""
from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # torchrun/-m entry: before torch is imported (spin-waiting OpenMP threads, §13)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from radsim.data_contracts import UsageError
from radsim.imaging.reader import FRONTAL

from .checkpoint import BEST_FILE, LAST_FILE, ModelCard, read_checkpoint, save_checkpoint, write_card
from .data import (
    MemoryFeeder,
    ShardInfo,
    SplitData,
    StreamFeeder,
    choose_mode,
    load_split,
    make_sampler,
    read_shard_info,
    split_labels,
)
from .distributed import DistContext, default_num_threads, init_distributed, shutdown
from .embed import embed_images
from .encoders import BACKBONES, build_encoder, load_init_weights
from .losses import LOSSES, build_loss
from .train_core import DeviceSetup, NonFiniteLossError, cosine_with_warmup, resolve_device

DEFAULTS = {
    "epochs": 40,
    "batch_size": 64,
    "lr": 2e-3,
    "weight_decay": 1e-4,
    "warmup": 1.0,  # epochs (fractions allowed)
    "patience": 10,
    "clip_norm": 1.0,
}


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
            # any level can be undefined on a small validation split (no normal film, say): "n/a"
            line += (f"\n  validation P@10 {_fmt(m['precision_at_10'])} (chance {_fmt(m.get('precision_at_10_chance'))}, "
                     f"untrained {_fmt(b.get('precision_at_10'))}), normal AUC {_fmt(m.get('normal_auc'))} "
                     f"(untrained {_fmt(b.get('normal_auc'))}) at epoch {self.best_epoch}")
        return line + f"\n  model folder: {self.model_dir}"


# ----------------------------------------------------------------------------- validation
def validation_metrics(embeddings: np.ndarray, labels: np.ndarray, normal_index: int | None) -> dict[str, Any]:
    """P@10 and normal-vs-abnormal kNN AUC, each with its chance level (radsim.evaluation)."""
    from radsim.evaluation import retrieval_scores

    if embeddings.shape[0] < 2:
        return {}
    s = retrieval_scores(embeddings, labels, ks=(10,), ndcg_ks=(), finding_k=None, normal_index=normal_index,
                         with_map=False)
    auc = s.normal_auc if normal_index is not None else None
    return {
        "precision_at_10": _num(s.precision_at_k[10]),
        "precision_at_10_chance": _num(s.precision_at_k_chance[10]),
        "normal_auc": _num(auc),
        "normal_auc_chance": 0.5,
        "n_items": int(s.n_items),
        "n_queries": int(s.n_queries),
    }


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


def _evaluate(model: torch.nn.Module, val: SplitData | None, setup: DeviceSetup, normal_index: int | None) -> dict:
    if val is None or len(val) < 2:
        return {}
    emb = embed_images(model, val.float_images(), batch_size=256, device=setup)
    return validation_metrics(emb, val.labels, normal_index)


# ------------------------------------------------------------------------- compatibility
def _check_against(card: dict[str, Any], info: ShardInfo, backbone: str, embedding_dim: int | None,
                   image_size: int | None, what: str, path: Path) -> None:
    """A checkpoint (resumed or used as init) must fit the shards and the requested model."""
    if card.get("backbone") != backbone:
        raise UsageError(f"{what} {path} is a {card.get('backbone')!r} checkpoint, not {backbone!r}: "
                         f"use --backbone {card.get('backbone')} or another checkpoint")
    if embedding_dim is not None and int(card.get("embedding_dim", -1)) != embedding_dim:
        raise UsageError(f"{what} {path} has embedding dimension {card.get('embedding_dim')}, not {embedding_dim}")
    if list(card.get("findings") or []) != info.findings:
        raise UsageError(f"{what} {path} was trained with vocabulary {card.get('vocabulary_name')!r} "
                         f"({len(card.get('findings') or [])} findings) but the shards in {info.shards_dir} use "
                         f"{info.vocabulary_name!r} ({len(info.findings)} findings)")
    model_size = int(card.get("image_size", 0))
    if image_size is None and model_size != info.image_size:
        raise UsageError(f"the shards in {info.shards_dir} are {info.image_size} px but {what} {path} was trained "
                         f"at {model_size} px: pass --image-size {model_size} to resize on the fly, or use other shards")
    if image_size is not None and model_size != image_size:
        raise UsageError(f"{what} {path} was trained at {model_size} px, not --image-size {image_size}")


def _is_radsim_checkpoint(path: Path) -> bool:
    if path.is_dir():
        return (path / BEST_FILE).is_file()
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not ours; load_init_weights reports properly
        return False
    return isinstance(payload, dict) and "format" in payload and "card" in payload


def make_model_version(backbone: str, loss: str, manifest_sha256: str, when: datetime | None = None) -> str:
    """`<backbone>-<loss>-<UTC yyyymmddHHMMSS>-<8 hex of the manifest hash>`: no dots (a webdataset key rule)."""
    when = when or datetime.now(timezone.utc)
    return f"{backbone}-{loss}-{when:%Y%m%d%H%M%S}-{manifest_sha256[:8]}"


# ---------------------------------------------------------------------------- the step
def optimizer_step(model: torch.nn.Module, loss_fn: Callable, optimizer: torch.optim.Optimizer,
                   scheduler: Any, micro: Sequence[tuple[torch.Tensor, torch.Tensor]], setup: DeviceSetup, *,
                   step: int, clip_norm: float | None, ctx: DistContext) -> float:
    """One optimiser step over `micro` batches (mean of their losses); checks every loss is finite first.

    Under DDP the gradients of the last micro-batch are all-reduced (no_sync before), and
    a non-finite loss on any rank stops every rank before its backward pass.
    """
    model.train()
    optimizer.zero_grad(set_to_none=True)
    total, n = 0.0, len(micro)
    for j, (x, y) in enumerate(micro):
        sync = model.no_sync() if ctx.enabled and j < n - 1 else contextlib.nullcontext()
        with sync:
            with setup.autocast():
                emb = model(setup.images(x))
            loss = loss_fn(emb.float(), y.to(setup.device, dtype=torch.float32, non_blocking=True))
            value = float(loss.detach())
            if ctx.any(not math.isfinite(value)):
                raise NonFiniteLossError(f"non-finite loss ({value}) at step {step}")
            (loss / n).backward()
        total += value
    if clip_norm:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
    optimizer.step()
    scheduler.step()
    return total / n


def _grouped(batches, k: int):
    group = []
    for b in batches:
        group.append(b)
        if len(group) == k:
            yield group
            group = []


def _progress_bar(total: int, enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, unit="step", desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr,
                disable=not enabled or not sys.stderr.isatty())


# ------------------------------------------------------------------------------ the loop
def train_embedding_model(
    shards_dir: str | Path,
    out_dir: str | Path,
    *,
    loss: str = "ml2",
    backbone: str = "small",
    epochs: int = DEFAULTS["epochs"],
    image_size: int | None = None,
    embedding_dim: int = 128,
    batch_size: int = DEFAULTS["batch_size"],
    lr: float = DEFAULTS["lr"],
    weight_decay: float = DEFAULTS["weight_decay"],
    warmup: float = DEFAULTS["warmup"],
    seed: int = 0,
    device: str = "auto",
    init_weights: str | Path | None = None,
    resume: bool = False,
    max_minutes: float | None = None,
    patience: int | None = DEFAULTS["patience"],
    progress: bool = True,
    num_threads: int | None = None,
    max_steps: int | None = None,
    accumulate: int = 1,
    data: str = "auto",
    views: Sequence[str] | None = FRONTAL,
    loss_options: dict[str, Any] | None = None,
    clip_norm: float | None = DEFAULTS["clip_norm"],
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train an encoder on SHARDS_DIR's train split into OUT_DIR (see the module docstring).

    `image_size` None trains at the shards' size (another value resizes on the fly);
    `max_minutes` bounds the training steps (a cut epoch is validated and saved, and
    `resume` continues inside it); `patience` epochs without a better validation P@10 stop
    early (None: never); `num_threads` None picks 1 per process on a loaded machine.
    `data`: auto | memory | stream (see model/data.py).
    """
    started = time.perf_counter()
    backbone, loss = backbone.lower(), loss.lower()
    if backbone not in BACKBONES:
        raise UsageError(f"unknown backbone {backbone!r}: choose one of {', '.join(BACKBONES)}")
    if loss not in LOSSES:
        raise UsageError(f"unknown loss {loss!r}: choose one of {', '.join(LOSSES)}")
    for name, value, low in (("epochs", epochs, 1), ("batch_size", batch_size, 2), ("accumulate", accumulate, 1),
                             ("embedding_dim", embedding_dim, 1)):
        if int(value) < low:
            raise UsageError(f"{name} must be at least {low} (got {value})")
    if image_size is not None and image_size < 16:
        raise UsageError(f"image_size must be at least 16 px (got {image_size})")
    if lr <= 0 or not math.isfinite(lr):
        raise UsageError(f"lr must be a positive number (got {lr})")
    out_dir = Path(out_dir)
    info = read_shard_info(shards_dir)
    setup = resolve_device(device)
    ctx = init_distributed(setup.device.type)
    if ctx.backend == "nccl":
        setup = DeviceSetup(torch.device("cuda", ctx.local_rank), setup.amp_dtype, setup.channels_last)
    threads_before = torch.get_num_threads()
    if setup.device.type == "cpu":
        torch.set_num_threads(default_num_threads(ctx.local_world_size, num_threads))
    say = (log or (lambda line: print(line, file=sys.stderr, flush=True))) if ctx.is_main and (progress or log) \
        else (lambda line: None)
    try:
        return _train(
            out_dir=out_dir, loss=loss, backbone=backbone, epochs=epochs, image_size=image_size,
            embedding_dim=embedding_dim, batch_size=batch_size, lr=lr, weight_decay=weight_decay, warmup=warmup,
            seed=seed, init_weights=init_weights, resume=resume, max_minutes=max_minutes, patience=patience,
            progress=progress, max_steps=max_steps, accumulate=accumulate, data=data, views=views,
            loss_options=loss_options, clip_norm=clip_norm, started=started, info=info, setup=setup, ctx=ctx, say=say)
    finally:
        torch.set_num_threads(threads_before)
        shutdown(ctx)


def _train(*, out_dir: Path, loss: str, backbone: str, epochs: int, image_size: int | None, embedding_dim: int,
           batch_size: int, lr: float, weight_decay: float, warmup: float, seed: int, init_weights,
           resume: bool, max_minutes: float | None, patience: int | None, progress: bool, max_steps: int | None,
           accumulate: int, data: str, views, loss_options: dict | None, clip_norm: float | None, started: float,
           info: ShardInfo, setup: DeviceSetup, ctx: DistContext, say: Callable[[str], None]) -> TrainResult:
    last_path, best_path = out_dir / LAST_FILE, out_dir / BEST_FILE
    state: dict[str, Any] | None = None
    card_dict: dict[str, Any] | None = None
    if resume:
        if not last_path.is_file():
            raise UsageError(f"--resume: no {LAST_FILE} in {out_dir} (train without --resume first)")
        state = read_checkpoint(last_path)
        card_dict = state["card"]
        _check_against(card_dict, info, backbone, embedding_dim, image_size, "the model being resumed", last_path)
        image_size = int(card_dict["image_size"])
        if card_dict.get("data_manifest_sha256") != info.manifest_sha256:
            say(f"note: the shards changed since {last_path} was written (manifest hash differs); "
                "the data order will not match the interrupted run")
    elif last_path.exists():
        raise UsageError(f"{out_dir} already holds a model ({LAST_FILE}): pass --resume to continue it, "
                         "or choose a new --out")
    init_payload = None  # a radsim checkpoint as --init-weights: checked before any data is read
    if init_weights and state is None:
        path = Path(init_weights)
        if not path.exists():
            raise UsageError(f"--init-weights {path}: no such file")
        if _is_radsim_checkpoint(path):
            init_payload = read_checkpoint(path / BEST_FILE if path.is_dir() else path)
            _check_against(init_payload["card"], info, backbone, embedding_dim, image_size, "--init-weights", path)
            image_size = int(init_payload["card"]["image_size"])
    size = int(image_size or info.image_size)

    # ---- data
    train_labels = split_labels(info, "train", views=views)
    if train_labels.shape[0] < batch_size:
        raise UsageError(f"{info.shards_dir} has {train_labels.shape[0]} labelled training images "
                         f"({'/'.join(views) if views else 'all views'}), fewer than one batch of {batch_size}")
    mode = choose_mode(data, train_labels.shape[0], size)
    try:
        if mode == "memory":
            train = load_split(info, "train", views=views, image_size=size)
            sampler = make_sampler(train.labels, batch_size, seed=seed, rank=ctx.rank, world_size=ctx.world_size,
                                   accumulate=accumulate)
            feeder: MemoryFeeder | StreamFeeder = MemoryFeeder(train, sampler)
        else:
            feeder = StreamFeeder(info, train_labels, batch_size, seed=seed, rank=ctx.rank, world_size=ctx.world_size,
                                  accumulate=accumulate, image_size=size)
    except ValueError as exc:  # the sampler: no finding shared by two images, batch larger than the data
        raise UsageError(f"cannot batch the training split of {info.shards_dir}: {exc}") from None
    steps_per_epoch = len(feeder) // accumulate
    val = load_split(info, "val", views=views, image_size=size) if ctx.is_main else None
    normal_index = info.findings.index("no_finding") if "no_finding" in info.findings else None

    # ---- model, loss, optimiser
    torch.manual_seed(seed)
    model = build_encoder(backbone, embedding_dim=embedding_dim)
    init_note = None
    if init_payload is not None:
        model.load_state_dict(init_payload["state_dict"])
        init_note = f"radsim checkpoint {init_weights} ({init_payload['card'].get('model_version')})"
    elif init_weights and state is None:
        init_note = load_init_weights(model, init_weights).summary()
    model = setup.prepare(model)
    loss_fn = build_loss(loss, **(loss_options or {}))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    total_steps = epochs * steps_per_epoch
    scheduler = cosine_with_warmup(optimizer, total_steps, round(warmup * steps_per_epoch))

    if state is not None:
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng_torch"])
        card = ModelCard.from_dict(card_dict)
        prog = dict(state["progress"])
    else:
        card = ModelCard(
            model_version=make_model_version(backbone, loss, info.manifest_sha256), backbone=backbone,
            embedding_dim=embedding_dim, image_size=size, loss=loss, vocabulary_name=info.vocabulary_name,
            vocabulary_version=info.vocabulary_version, findings=list(info.findings), key_id=info.key_id,
            data_manifest_sha256=info.manifest_sha256,
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        prog = {"epoch": 0, "batches_done": 0, "step": 0, "best_p10": None, "best_epoch": None, "bad_epochs": 0,
                "history": [], "stopped": None, "train_seconds": 0.0, "images": 0}
        if ctx.is_main:
            base = _evaluate(model, val, setup, normal_index)
            card.baseline_metrics = {"untrained_encoder": base, "random_embedding": _random_baseline(val, embedding_dim,
                                                                                                     normal_index, seed)}
    if prog.get("stopped") == "early_stopping" or (prog["epoch"] >= epochs):
        say(f"{out_dir}: training already finished ({prog.get('stopped') or 'completed'}); nothing to resume")
        return _result(out_dir, card, prog, "already_done", started)

    settings = {"source_image_size": info.image_size, "epochs": epochs, "batch_size": batch_size, "world_size": ctx.world_size, "accumulate": accumulate,
                "lr": lr, "weight_decay": weight_decay, "warmup_epochs": warmup, "seed": seed, "patience": patience,
                "clip_norm": clip_norm, "max_minutes": max_minutes, "device": str(setup.device),
                "amp": str(setup.amp_dtype).replace("torch.", "") if setup.amp_dtype else None,
                "channels_last": setup.channels_last, "num_threads": torch.get_num_threads(), "data": mode,
                "views": list(views) if views else None, "loss_options": dict(loss_options or {}),
                "steps_per_epoch": steps_per_epoch, "train_images": int(train_labels.shape[0]),
                "val_images": len(val) if val is not None else None, "init_weights": init_note}

    if ctx.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[ctx.local_rank] if ctx.backend == "nccl" else None)
    else:
        net = model

    def save_last() -> None:
        if ctx.is_main:
            card.training = {**settings, **_speed(prog), "stopped": prog["stopped"], "history": prog["history"]}
            save_checkpoint(last_path, model, card, optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                            rng_torch=torch.get_rng_state(), progress=dict(prog))
            write_card(out_dir, card)

    ctx.barrier()  # every rank has checked the folder before rank 0 writes to it
    if state is None:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_last()  # step 0: there is always a last good checkpoint
        say(f"training {card.model_version} on {settings['train_images']} images ({mode}, {steps_per_epoch} "
            f"steps/epoch, {settings['num_threads']} thread(s), {setup.device}); untrained validation P@10 "
            f"{_fmt(card.baseline_metrics.get('untrained_encoder', {}).get('precision_at_10'))}")
    else:
        say(f"resuming {card.model_version} at epoch {prog['epoch'] + 1}, step {prog['step']}")

    deadline = time.perf_counter() + max_minutes * 60 if max_minutes else None
    start_step = prog["step"]
    stop: str | None = None
    epoch = prog["epoch"]
    while epoch < epochs and stop is None:
        skip = prog["batches_done"]
        bar = _progress_bar(steps_per_epoch, progress and ctx.is_main, f"epoch {epoch + 1}/{epochs}")
        bar.update(skip // accumulate)
        t0, n_img, losses = time.perf_counter(), 0, []
        try:
            for micro in _grouped(feeder.epoch(epoch, skip=skip), accumulate):
                step = prog["step"] + 1
                try:
                    value = optimizer_step(net, loss_fn, optimizer, scheduler, micro, setup, step=step,
                                           clip_norm=clip_norm, ctx=ctx)
                except NonFiniteLossError as exc:
                    raise NonFiniteLossError(
                        f"{exc} (epoch {epoch + 1}); training stopped. The last good checkpoint is kept: "
                        f"{last_path} (step {_saved_step(last_path)})") from None
                prog["step"], prog["batches_done"] = step, prog["batches_done"] + accumulate
                n_img += sum(int(x.shape[0]) for x, _ in micro) * ctx.world_size
                losses.append(value)
                bar.update(1)
                if progress:
                    bar.set_postfix(loss=f"{value:.4f}", img_s=f"{n_img / max(time.perf_counter() - t0, 1e-9):.0f}")
                if max_steps is not None and step - start_step >= max_steps:
                    stop = "max_steps"
                elif deadline is not None and ctx.any(time.perf_counter() >= deadline):
                    stop = "time_limit"
                if stop:
                    break
        finally:
            bar.close()
        if setup.device.type == "cuda":
            torch.cuda.synchronize(setup.device)
        seconds = time.perf_counter() - t0
        prog["train_seconds"] += seconds
        prog["images"] += n_img
        complete = prog["batches_done"] >= len(feeder)
        stop = _end_of_epoch(model, val, setup, normal_index, prog, epoch, complete, losses, n_img, seconds, patience,
                             best_path, card, ctx, say) or stop
        if complete:
            prog["epoch"], prog["batches_done"] = epoch + 1, 0
            epoch += 1
        prog["stopped"] = stop
        save_last()
        if stop is None and epoch >= epochs:
            prog["stopped"] = "completed"
    stopped = prog["stopped"] or "completed"
    prog["stopped"] = stopped

    if ctx.is_main:
        save_last()
        card.metrics = _best_metrics(prog)
        card.training = {**settings, **_speed(prog), "stopped": stopped, "history": prog["history"],
                         "seconds_total": round(time.perf_counter() - started, 2)}
        if best_path.exists():  # the best weights, with the final card
            best = read_checkpoint(best_path)
            final = build_encoder(backbone, embedding_dim=embedding_dim)
            final.load_state_dict(best["state_dict"])
            save_checkpoint(best_path, final, card)
        else:  # no validation split: the last weights are the model
            save_checkpoint(best_path, model, card)
        write_card(out_dir, card)
    ctx.barrier()
    return _result(out_dir, card, prog, stopped, started)


def _end_of_epoch(model, val, setup, normal_index, prog, epoch, complete, losses, n_img, seconds, patience,
                  best_path, card, ctx, say) -> str | None:
    """Validate (rank 0), keep the best model, decide early stopping; every rank gets the decision."""
    stop = None
    if ctx.is_main:
        metrics = _evaluate(model, val, setup, normal_index)
        p10 = metrics.get("precision_at_10")
        row = {"epoch": epoch + 1, "complete": complete, "step": prog["step"],
               "loss": float(np.mean(losses)) if losses else None, "images_per_s": round(n_img / seconds, 1)
               if seconds > 0 else None, **{k: metrics.get(k) for k in ("precision_at_10", "normal_auc")}}
        prog["history"].append(row)
        improved = p10 is not None and (prog["best_p10"] is None or p10 > prog["best_p10"] + 1e-9)
        if improved:
            prog["best_p10"], prog["best_epoch"], prog["bad_epochs"] = p10, epoch + 1, 0
            prog["best_metrics"] = {**metrics, "split": "val", "epoch": epoch + 1}
            card.metrics = _best_metrics(prog)
            save_checkpoint(best_path, model, card)
        elif p10 is not None and complete:
            prog["bad_epochs"] += 1
        if patience is not None and p10 is not None and prog["bad_epochs"] >= patience:
            stop = "early_stopping"
        say(f"epoch {epoch + 1}: loss {_fmt(row['loss'])}, {_fmt(row['images_per_s'], '.0f')} images/s, "
            f"val P@10 {_fmt(p10)} (chance {_fmt(metrics.get('precision_at_10_chance'))}), "
            f"normal AUC {_fmt(metrics.get('normal_auc'))}{' *' if improved else ''}")
    return ctx.broadcast(stop)


def _best_metrics(prog: dict) -> dict[str, Any]:
    return dict(prog.get("best_metrics") or {})


def _speed(prog: dict) -> dict[str, Any]:
    s = prog.get("train_seconds") or 0.0
    return {"images_per_s": round(prog["images"] / s, 1) if s > 0 else None, "train_seconds": round(s, 2),
            "steps": prog["step"]}


def _random_baseline(val: SplitData | None, dim: int, normal_index: int | None, seed: int) -> dict:
    from radsim.evaluation import random_embeddings

    if val is None or len(val) < 2:
        return {}
    return validation_metrics(random_embeddings(len(val), dim, seed=seed), val.labels, normal_index)


def _saved_step(path: Path) -> Any:
    try:
        return read_checkpoint(path)["progress"]["step"]
    except Exception:  # noqa: BLE001 - only for the message
        return "?"


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "n/a" if x is None else format(x, spec)


def _result(out_dir: Path, card: ModelCard, prog: dict, stopped: str, started: float) -> TrainResult:
    return TrainResult(out_dir, card.model_version, card, prog.get("best_epoch"),
                       len({h["epoch"] for h in prog["history"]}), prog["step"], stopped,
                       _speed(prog)["images_per_s"] or float("nan"), time.perf_counter() - started,
                       list(prog["history"]))


def result_from_folder(out_dir: str | Path) -> TrainResult:
    """The TrainResult of a run that rank 0 of a torchrun job finished: its card and last.pt's progress."""
    from .registry import read_card

    out_dir = Path(out_dir)
    state = read_checkpoint(out_dir / LAST_FILE)
    prog, card = state["progress"], read_card(out_dir)
    return TrainResult(out_dir, card.model_version, card, prog.get("best_epoch"),
                       len({h["epoch"] for h in prog["history"]}), prog["step"], prog.get("stopped") or "completed",
                       _speed(prog)["images_per_s"] or float("nan"), float(prog.get("train_seconds") or 0.0),
                       list(prog["history"]))


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m radsim.model.train ARGS` == `radsim train ARGS` (the torchrun entry point).

    A torchrun rank dies with its torchrun (radsim.model.launch.die_with_parent).
    """
    from radsim.flows.cli import main as cli_main

    if "LOCAL_RANK" in os.environ:
        from .launch import die_with_parent

        die_with_parent()

    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
