"""Entry points for worker processes of `label_reports(workers > 1)`; spawn-safe.

This module's top level stays light: the parent imports it only to name these functions. In a
worker, `init_worker` runs first and builds the labeler once. spaCy's thinc imports torch when it
is installed (about 280 MB per process) although labelling never uses it, so a worker that has not
imported torch yet blocks it before importing spaCy.
"""
from __future__ import annotations

import sys
from typing import Any

_STATE: dict[str, Any] = {}


def init_worker(vocabulary: Any, certainty_threshold: str | None = None, block_torch: bool = True) -> None:
    if block_torch and "torch" not in sys.modules:
        sys.modules["torch"] = None  # type: ignore[assignment]  # import torch -> ImportError, thinc skips it
    from .labeler import Labeler

    _STATE["labeler"] = Labeler(vocabulary, certainty_threshold=certainty_threshold)
    _STATE["vocabulary"] = vocabulary


def label_chunk(args: tuple[list[tuple[str, object]], int]) -> Any:
    from .chunks import label_chunk

    items, batch_size = args
    return label_chunk(_STATE["labeler"], _STATE["vocabulary"], items, batch_size)
