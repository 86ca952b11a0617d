"""The start method of radsim's worker processes: forkserver, with the workers' modules preloaded.

fork is unsafe once the parent has threads (Prefect, tqdm's monitor, torch's pools), spawn
re-imports everything in every worker. A forkserver starts once per process; what it preloads,
every worker it forks has already imported, so a DataLoader that starts its workers each epoch
does not pay for importing torch each time. The server starts with the first pool of the process
and keeps its preload list: the union of what callers asked for, plus the training input modules
whenever the process has imported torch already (a training process that shards first still gets
workers with torch imported; a labelling or sharding process never pays for torch).
"""
from __future__ import annotations

import multiprocessing as mp
import sys
from collections.abc import Sequence
from typing import Any

_PRELOAD: list[str] = []
TORCH_WORKERS = ("radsim.model.data", "radsim.imaging.reader")  # the streaming feeder's DataLoader workers


def worker_context(preload: Sequence[str] = ()) -> Any:
    """A multiprocessing context for worker pools: forkserver (preloading `preload`) where there is one."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    for name in [*preload, *(TORCH_WORKERS if "torch" in sys.modules else ())]:
        if name not in _PRELOAD:
            _PRELOAD.append(name)
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(list(_PRELOAD))
    return ctx
