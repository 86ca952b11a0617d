"""One optimisation step and one epoch over any iterable of (images, label vectors) batches.

No I/O here: the shard reader, checkpoints, validation and DDP set-up belong to the
training loop that calls these functions. Device "auto" picks CUDA with bf16 autocast
and channels_last when available, else CPU in fp32 (bf16 on CPU is slower here and
changes numerics for nothing). A non-finite loss raises before the optimiser step, so
the weights (and the last checkpoint) stay as they were.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from radsim.data_contracts import RadsimError, UsageError


class NonFiniteLossError(RadsimError):
    """The loss became NaN or infinite; the message names the step."""


@dataclass(frozen=True)
class DeviceSetup:
    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool

    def autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype or torch.float32,
                              enabled=self.amp_dtype is not None)

    def images(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, dtype=torch.float32, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def prepare(self, model: nn.Module) -> nn.Module:
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model


def resolve_device(device: str = "auto") -> DeviceSetup:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' -> where and how to run."""
    name = (device or "auto").lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {device}: CUDA is not available on this machine (use auto or cpu)")
        return DeviceSetup(torch.device(name), torch.bfloat16, True)
    if name == "cpu":
        return DeviceSetup(torch.device("cpu"), None, False)
    raise UsageError(f"unknown device {device!r}: use auto, cpu or cuda[:N]")


def cosine_with_warmup(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0,
                       min_lr_ratio: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up from lr/warmup to lr over `warmup_steps`, then cosine down to lr*min_lr_ratio."""
    total_steps = max(1, int(total_steps))
    warmup_steps = max(0, min(int(warmup_steps), total_steps))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def train_step(model: nn.Module, loss_fn: LossFn, optimizer: torch.optim.Optimizer, images: torch.Tensor,
               labels: torch.Tensor, setup: DeviceSetup, *, step: int, clip_norm: float | None = 1.0,
               scheduler: torch.optim.lr_scheduler.LRScheduler | None = None) -> float:
    """Forward, loss, backward, clip, optimiser and scheduler step; returns the loss value."""
    model.train()
    x = setup.images(images)
    y = torch.as_tensor(labels).to(setup.device, dtype=torch.float32, non_blocking=True)
    with setup.autocast():
        emb = model(x)
    loss = loss_fn(emb.float(), y)
    value = float(loss.detach())
    if not math.isfinite(value):
        raise NonFiniteLossError(f"non-finite loss ({value}) at step {step}; weights left at step {step - 1}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip_norm:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return value


@dataclass(frozen=True)
class EpochStats:
    steps: int
    last_step: int
    mean_loss: float
    images: int
    seconds: float

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")


def train_epoch(model: nn.Module, loss_fn: LossFn, optimizer: torch.optim.Optimizer,
                batches: Iterable[tuple[torch.Tensor, torch.Tensor]], setup: DeviceSetup, *, start_step: int = 0,
                clip_norm: float | None = 1.0, scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                max_steps: int | None = None, progress: bool = False,
                on_step: Callable[[int, float], None] | None = None) -> EpochStats:
    """Run `train_step` over `batches`; steps are numbered from `start_step + 1`.

    `progress` shows a tqdm bar on stderr with loss and images/s (off when not a TTY).
    """
    from tqdm import tqdm

    bar = tqdm(batches, disable=not progress, unit="batch", leave=False, dynamic_ncols=True)
    step, n_images, total = start_step, 0, 0.0
    t0 = time.perf_counter()
    for images, labels in bar:
        if max_steps is not None and step - start_step >= max_steps:
            break
        step += 1
        value = train_step(model, loss_fn, optimizer, images, labels, setup, step=step, clip_norm=clip_norm,
                           scheduler=scheduler)
        n_images += int(images.shape[0])
        total += value
        if on_step is not None:
            on_step(step, value)
        if progress:
            bar.set_postfix(loss=f"{value:.4f}", img_s=f"{n_images / max(time.perf_counter() - t0, 1e-9):.0f}")
    if setup.device.type == "cuda":
        torch.cuda.synchronize(setup.device)
    steps = step - start_step
    return EpochStats(steps, step, total / steps if steps else float("nan"), n_images, time.perf_counter() - t0)
