"""Prefect flow `build_shards`: plan → decode batches on a task runner → commit shards.

The flow only chains the plain functions of radsim.imaging.shards; reruns are decided by
the shard manifest, not Prefect's cache (DESIGN §11), so tasks run with NO_CACHE.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from radsim.flows.prefect_env import configure_prefect

configure_prefect()  # before prefect is imported

from prefect import flow, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

from radsim.data_contracts import keyer_from_env, load_vocabulary  # noqa: E402
from radsim.data_contracts.inflight import in_order
from radsim.flows.task_runners import RUNNERS, make_task_runner  # noqa: E402,F401 - re-exported
from radsim.imaging.config import ShardOptions, shard_options  # noqa: E402
from radsim.imaging.shards import (  # noqa: E402
    ShardPlan,
    ShardSite,
    commit_shard_run,
    plan_shard_run,
    shard_dir_lock,
)
from radsim.imaging.worker import DecodeOptions, DecodeResult, WorkItem, decode_batch  # noqa: E402
from radsim.model.embed_config import DEFAULT_WORKERS  # noqa: E402


@task(name="decode-batch", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=1)
def decode_batch_task(batch: list[WorkItem], opts: DecodeOptions) -> list[DecodeResult]:
    return decode_batch(batch, opts)


def _mapped(plan: ShardPlan, window: int) -> Iterator[DecodeResult]:
    """Submit batches to the flow's task runner, at most `window` in flight, results in order."""
    for _, results in in_order(plan.batches(), lambda batch: decode_batch_task.submit(batch, plan.options), window):
        yield from results


def _artifact(summary: Any) -> None:
    from radsim.flows.artifacts import table_artifact

    table_artifact("shard-counts", [summary.counts.as_dict()], summary.summary())


@flow(name="build_shards", task_runner=ThreadPoolTaskRunner(max_workers=DEFAULT_WORKERS))
def build_shards(
    exams: str,
    labels: str | None,
    out: str,
    options: ShardOptions | None = None,
    workers: int = DEFAULT_WORKERS,
    demo_key: bool = False,
    vocabulary: str | None = None,
    quarantine: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Shard an exams table (+ labels) into `out`; returns the reconciled counts and new shards.

    `options` holds the sizes, split fractions and limits (radsim.imaging.config.ShardOptions).
    Refused images go to the restricted table `quarantine` (default: beside `out`, in ../restricted).

    Wide on purpose: a Prefect flow's parameters are what a deployment sets and the UI shows, one flat typed
    value each; the shard settings themselves travel as one ShardOptions.
    """
    keyer = keyer_from_env(demo=demo_key)
    vocab = load_vocabulary(vocabulary)
    with shard_dir_lock(out):
        plan = plan_shard_run(exams, labels, out, keyer=keyer, site=ShardSite(vocab, quarantine_path=quarantine),
                              options=options)
        summary = commit_shard_run(plan, _mapped(plan, window=2 * max(1, workers)), progress=progress)
    _artifact(summary)
    return {**summary.counts.as_dict(), "shards_written": summary.shards_written,
            "samples_total": summary.samples_total, "summary": summary.summary(), "out": str(Path(out)),
            "quarantine": str(summary.quarantine_path), "quarantine_reasons": summary.quarantine_reasons}


def run_build_shards(
    exams: str,
    labels: str | None,
    out: str,
    *,
    runner: str = "threads",
    workers: int = DEFAULT_WORKERS,
    dask_address: str | None = None,
    options: ShardOptions | None = None,
    demo_key: bool = False,
    vocabulary: str | None = None,
    quarantine: str | None = None,
    progress: bool = False,
    **settings: Any,
) -> dict[str, Any]:
    """Run the flow with the chosen task runner (threads, processes or dask) and worker count.

    ShardOptions fields given as keywords (`image_size=64`) override `options`. On Dask only the
    decode batches leave this process; the shard commit stays here.

    Wide on purpose: the build_shards flow's parameters plus the task runner that runs it.
    """
    return build_shards.with_options(task_runner=make_task_runner(runner, workers, dask_address))(
        exams, labels, out, options=shard_options(options, **settings), workers=workers, demo_key=demo_key,
        vocabulary=vocabulary, quarantine=quarantine, progress=progress)
