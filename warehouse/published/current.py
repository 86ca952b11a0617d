"""Promotion in the published table: which version analysts read (versions.parquet's `current`)."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from .layout import publish_lock
from .prune import finish_interrupted_prune
from .versions import write_versions


def set_current(published_dir: str | Path, model_version: str, *, reason: str | None = None) -> pa.Table:
    """Make a published version the current one (atomic; takes the publish lock)."""
    with publish_lock(published_dir):
        finish_interrupted_prune(published_dir)
        return write_versions(published_dir, current=model_version, reason=reason)
