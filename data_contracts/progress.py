"""One progress bar for every long stage: on stderr, only when stderr is a terminal and it is asked for.

Logs and pipes (a scheduled run, CI) get no bar characters; the stage's summary line says the rest.
"""
from __future__ import annotations

import sys
from typing import Any


def progress_bar(total: int | None, enabled: bool, *, unit: str, desc: str, leave: bool = False) -> Any:
    """A tqdm bar (a context manager with `.update(n)`), disabled unless `enabled` and stderr is a tty."""
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, desc=desc, file=sys.stderr, dynamic_ncols=True, leave=leave,
                disable=not enabled or not sys.stderr.isatty())
