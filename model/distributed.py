"""DDP set-up for `torchrun --nproc-per-node N -m radsim.flows.torchrun ...` (DESIGN §8, §11).

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; without them (or
with WORLD_SIZE=1) training runs as one plain process. Backends: nccl on CUDA, gloo on CPU.
Only rank 0 validates and writes checkpoints; decisions that end a loop (early stopping,
the time budget, a non-finite loss) are agreed through a collective, so no rank is left
waiting in an all-reduce that the others will never join.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def any(self, flag: bool) -> bool:
        """True on every rank when `flag` is true on any rank (a MAX all-reduce)."""
        if not self.enabled:
            return bool(flag)
        t = torch.tensor([1.0 if flag else 0.0], device=self._device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def broadcast(self, obj):
        """Rank 0's `obj` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def _device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def init_distributed(device_type: str, timeout_minutes: float = 30.0) -> DistContext:
    """Join the process group torchrun describes (nccl for CUDA, gloo for CPU), or run alone."""
    world = env_world_size()
    if world <= 1:
        return DistContext()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    backend = "nccl" if device_type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=timedelta(minutes=timeout_minutes))
    return DistContext(rank, world, local_rank, local_world, backend)


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def default_num_threads(local_world_size: int = 1, requested: int | None = None) -> int:
    """Torch CPU threads per process: the cores this process may use, shared by the local ranks.

    Chosen from the CPU affinity mask only, never from the machine's load: the thread count
    changes the order of floating-point reductions, so a choice that follows the load would give
    the same command and seed different weights on a busy and a quiet machine. `requested`
    (`--threads`) pins it. Spin-waiting OpenMP threads on a shared machine are tamed by
    OMP_WAIT_POLICY=PASSIVE, which `radsim train` sets before torch is imported.
    """
    if requested:
        return max(1, int(requested))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, local_world_size))
