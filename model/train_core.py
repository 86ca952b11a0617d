"""The device, the schedule, the parameter groups and one optimisation step.

No I/O here: the shard reader, checkpoints, validation and DDP set-up belong to the
training loop (radsim.model.train) that calls these functions. Device "auto" picks CUDA with bf16 autocast
and channels_last when available, else CPU in fp32 (bf16 on CPU is slower here and
changes numerics for nothing). A non-finite loss raises before the optimiser step, so
the weights (and the last checkpoint) stay as they were.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from radsim.data_contracts import RadsimError, UsageError

from .augment import Augmentation, step_generator
from .distributed import DistContext


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


# ---------------------------------------------------------------------------- the step
@dataclass
class Parts:
    """What a training run steps: the model, its loss, optimiser, schedule and batch augmentation."""

    model: torch.nn.Module
    loss_fn: Callable
    optimizer: torch.optim.Optimizer
    scheduler: Any
    augment: Augmentation | None
    init_note: str | None = None


def optimizer_step(model: torch.nn.Module, parts: Parts, micro: Sequence[tuple[torch.Tensor, torch.Tensor]],
                   setup: DeviceSetup, *, step: int, clip_norm: float | None, ctx: DistContext, seed: int = 0) -> float:
    """One optimiser step over `micro` batches (mean of their losses); checks every loss is finite first.

    Under DDP the gradients of the last micro-batch are all-reduced (no_sync before), and
    a non-finite loss on any rank stops every rank before its backward pass. Micro-batch j of
    rank r is augmented with the generator of (seed, step, r * len(micro) + j): 2 ranks with one
    batch each draw what 1 process accumulating 2 batches draws.
    """
    optimizer, augment = parts.optimizer, parts.augment
    model.train()
    optimizer.zero_grad(set_to_none=True)
    total, n = 0.0, len(micro)
    for j, (x, y) in enumerate(micro):
        sync = model.no_sync() if ctx.enabled and j < n - 1 else contextlib.nullcontext()
        with sync:
            x = setup.images(x)
            if augment is not None and augment.active:
                x = augment(x, step_generator(seed, step * 65_536 + ctx.rank * n + j, x.device))
            with setup.autocast():
                emb = model(x)
            loss = parts.loss_fn(emb.float(), y.to(setup.device, dtype=torch.float32, non_blocking=True))
            value = float(loss.detach())
            if ctx.any(not math.isfinite(value)):
                raise NonFiniteLossError(f"non-finite loss ({value}) at step {step}")
            (loss / n).backward()
        total += value
    if clip_norm:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
    optimizer.step()
    parts.scheduler.step()
    return total / n


def grouped(batches: Iterable[Any], k: int) -> Iterator[list[Any]]:
    """Consecutive groups of `k` batches (a last, shorter group is dropped: a step takes k batches)."""
    group = []
    for b in batches:
        group.append(b)
        if len(group) == k:
            yield group
            group = []


def parameter_groups(model: torch.nn.Module, lr: float, backbone_fraction: float) -> list[dict[str, Any]]:
    """The projection at `lr`, the backbone at `lr * backbone_fraction` (frozen at 0: no gradients at all)."""
    net = getattr(model, "module", model)  # DDP wraps the EmbeddingNet
    head = list(net.projection.parameters())
    backbone = list(net.backbone.parameters())
    if backbone_fraction == 0:
        for p in backbone:
            p.requires_grad_(False)
        return [{"params": head, "lr": lr}]
    return [{"params": head, "lr": lr}, {"params": backbone, "lr": lr * backbone_fraction}]
