"""One optimisation step and one epoch over any iterable of (images, label vectors) batches.

No I/O here: the shard reader, checkpoints, validation and DDP set-up belong to the
training loop that calls these functions. Device "auto" picks CUDA with bf16 autocast
and channels_last when available, else CPU in fp32 (bf16 on CPU is slower here and
changes numerics for nothing). A non-finite loss raises before the optimiser step, so
the weights (and the last checkpoint) stay as they were.
"""
from __future__ import annotations

import math
from collections.abc import Callable
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


