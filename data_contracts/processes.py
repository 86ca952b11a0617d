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
_PRELOAD_WITH: dict[str, tuple[str, ...]] = {}  # trigger module -> modules every worker preloads once it is imported


def preload_with(trigger: str, modules: Sequence[str]) -> None:
    """Once `trigger` is imported in this process, the next forkserver preloads `modules` too.

    The layer that owns the modules registers them (radsim.model registers its training input
    modules under "torch"), so this floor never names a module above it.
    """
    _PRELOAD_WITH[trigger] = tuple(dict.fromkeys([*_PRELOAD_WITH.get(trigger, ()), *modules]))


def worker_context(preload: Sequence[str] = ()) -> Any:
    """A multiprocessing context for worker pools: forkserver (preloading `preload`) where there is one."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    triggered = [m for trigger, modules in _PRELOAD_WITH.items() if trigger in sys.modules for m in modules]
    for name in [*preload, *triggered]:
        if name not in _PRELOAD:
            _PRELOAD.append(name)
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(list(_PRELOAD))
    return ctx
