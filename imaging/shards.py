"""Exams + labels → pseudonymised WebDataset shards, incrementally and crash-safely (DESIGN §7, §12).

The run is split in three plain steps so the Prefect flow can put its own task runner in
the middle:

1. `plan_shard_run`: validate inputs, quarantine duplicates, key ids, fix sticky splits,
   clean up what a crashed run left behind, and list the decode work.
2. `decode_batch` (worker.py) over `plan.batches()`: pure, parallel, order-preserving.
3. `commit_shard_run`: stream the results into new shards; after each shard is renamed
   into place its rows are appended to manifest.parquet (atomic rewrite). A shard on disk
   that the manifest does not list is an orphan of a crash and is removed by the next plan.

What reaches a shard: the PNG, and a JSON with the label vector, labelled flag, view
position and split. No header value, no path, no raw id.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from radsim.data_contracts import IdKeyer
from radsim.data_contracts.inflight import in_order

from .config import ShardOptions
from .manifest import MANIFEST_FILE, META_IMAGE_SIZE, META_KEY_ID, SHARD_NAME, SOURCES_FILE, read_manifest
from .shard_commit import ShardRunSummary, commit_shard_run
from .shard_plan import (
    DEFAULT_BATCH,
    DEFAULT_MAXCOUNT,
    DEFAULT_MAXSIZE,
    DEFAULT_SITE,
    LEGACY_QUARANTINE_FILE,
    QUARANTINE_FILE,
    STAGE,
    PlannedRow,
    ShardPlan,
    ShardSite,
    default_quarantine_path,
    label_json,
    plan_shard_run,
    sample_key,
    shard_dir_lock,
)
from .worker import DecodeOptions, DecodeResult, WorkItem, decode_batch

__all__ = [  # the shard run's names, wherever they live
    "DEFAULT_BATCH",
    "DEFAULT_MAXCOUNT",
    "DEFAULT_MAXSIZE",
    "LEGACY_QUARANTINE_FILE",
    "MANIFEST_FILE",
    "META_IMAGE_SIZE",
    "META_KEY_ID",
    "QUARANTINE_FILE",
    "SHARD_NAME",
    "SOURCES_FILE",
    "STAGE",
    "PlannedRow",
    "ShardPlan",
    "ShardRunSummary",
    "ShardSite",
    "commit_shard_run",
    "decode_plan",
    "default_quarantine_path",
    "label_json",
    "ordered_map",
    "plan_shard_run",
    "read_manifest",
    "sample_key",
    "shard_dir_lock",
    "shard_refusals",
    "write_shards",
]


# --------------------------------------------------------------------------- step 2: decode


def _pool_context() -> Any:
    from radsim.data_contracts.processes import worker_context

    return worker_context(["radsim.imaging.worker"])  # workers start with the decoders imported


def ordered_map(fn: Callable[..., list[DecodeResult]], batches: Iterable[list[WorkItem]], opts: DecodeOptions,
                workers: int = 1, window: int | None = None) -> Iterator[DecodeResult]:
    """Results in input order, with at most `window` batches in flight (bounded memory)."""
    if workers <= 1:
        for batch in batches:
            yield from fn(batch, opts)
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context()) as pool:
        for _, results in in_order(batches, lambda batch: pool.submit(fn, batch, opts), window or 2 * workers,
                                   cancel_pending=True):
            yield from results


def decode_plan(plan: ShardPlan, workers: int = 1) -> Iterator[DecodeResult]:
    return ordered_map(decode_batch, plan.batches(), plan.options, workers)


# --------------------------------------------------------------------------- step 3: commit


def shard_refusals(quarantine_path: str | Path, since: datetime) -> set[str]:
    """Exam ids the shard stage quarantined at or after `since` (record ids are `<exam_id>/<index>...`).

    The warehouse ledger uses this so that an exam whose new image was refused (a re-send with
    other pixels: shards are never rewritten) is not marked as sharded.
    """
    path = Path(quarantine_path)
    if not path.exists():
        return set()
    rows = pq.read_table(path, columns=["stage", "record_id", "seen_at"]).to_pylist()
    return {r["record_id"].split("/", 1)[0] for r in rows if r["stage"] == STAGE and r["seen_at"] >= since}


# --------------------------------------------------------------------------- all three


def write_shards(
    exams: pa.Table | str | Path,
    labels: pa.Table | str | Path | None,
    out_dir: str | Path,
    *,
    keyer: IdKeyer,
    site: ShardSite = DEFAULT_SITE,
    workers: int = 1,
    progress: bool = True,
    options: ShardOptions | None = None,
    **settings: Any,
) -> ShardRunSummary:
    """Shard exams (an exams-contract table or its path) with their labels into `out_dir`.

    `site` (vocabulary, base_dir, quarantine_path), `options` and ShardOptions fields as keywords
    as for `plan_shard_run`.
    """
    with shard_dir_lock(out_dir):
        plan = plan_shard_run(exams, labels, out_dir, keyer=keyer, site=site, options=options, **settings)
        return commit_shard_run(plan, decode_plan(plan, workers), progress=progress)
