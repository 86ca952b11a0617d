"""The `pipeline` flow: what the schedule runs on new exams (DESIGN §1, §4, §11, §12).

ingest (inbox folder or manifest) → ledger diff → label new/amended reports → shard new images
(write_shards is incremental) → train when no current model exists or when asked (promotion
rule) → embed every sharded image with the current model → publish (the current version, all
rows, atomically) → evaluate when a validated subset (`truth`) is configured.

The ledger decides what runs, not Prefect's cache; the logic lives in radsim.warehouse and the
stage packages. This module only chains the steps; their tasks are in flows/pipeline_tasks.py and
the model steps in flows/pipeline_model.py.
"""
from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radsim.flows.prefect_env import configure_prefect

configure_prefect()  # before prefect is imported

from prefect import flow
from prefect.utilities.annotations import quote  # big arguments: Prefect must not walk every row

from radsim.data_contracts import StageCounts, UsageError, keyer_from_env, reason_counts
from radsim.flows.pipeline_model import train_publish_evaluate
from radsim.flows.pipeline_tasks import (
    diff_task,
    ingest_task,
    label_stage,
    merge_exams_task,
    quarantine_file,
    quarantine_task,
    shard_stage,
)
from radsim.flows.run_config import RunConfig
from radsim.flows.run_context import RunContext
from radsim.flows.run_log import say
from radsim.flows.run_report import report_run
from radsim.flows.streams import closed_pipe_safe
from radsim.warehouse.layout import MANIFEST_FILE, WarehouseLayout


@dataclass
class PipelineResult:
    layout: WarehouseLayout
    counts: list[StageCounts] = field(default_factory=list)
    outputs: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    headline: list[str] = field(default_factory=list)
    run_reasons: dict[str, dict[str, int]] = field(default_factory=dict)  # stage → this run's quarantine reasons
    metrics: dict[str, Any] = field(default_factory=dict)
    labelled: list[str] = field(default_factory=list)  # exam ids labelled by this run
    sharded: list[str] = field(default_factory=list)  # exam ids sent to the shard stage
    published_rows: int = 0
    model_version: str | None = None
    promotion: dict[str, Any] | None = None
    deferred: str | None = None  # why training was deferred (too little data), when it was
    nothing_new: bool = False
    seconds: float = 0.0


@contextlib.contextmanager
def ephemeral_run() -> Iterator[None]:
    """Without a Prefect server, switch flow-run heartbeats off for the runs started inside.

    Heartbeats let a server notice crashed runs; in ephemeral mode nobody listens, and each
    flow run's exit waits up to a second for the heartbeat thread (measured: 5 nested no-op
    flow runs 5.1 s with heartbeats, 0.6 s without). With PREFECT_API_URL set nothing changes.
    """
    import os

    if os.environ.get("PREFECT_API_URL"):
        yield
        return
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


@flow(name="pipeline")
def pipeline(inbox: str | None = None, warehouse: str | None = None, retrain: bool = False,
             config: RunConfig | None = None, config_path: str | None = None, demo_key: bool = False,
             progress: bool = False, quiet: bool = False, verify: bool = False) -> PipelineResult:
    """One scheduled run over INBOX into WAREHOUSE; the ledger makes a rerun do only what is new.

    `config` is an already resolved configuration (radsim run); deployments pass `config_path`
    (a radsim.toml) instead, and INBOX/WAREHOUSE default to its paths.inbox/paths.warehouse.
    Either may be an fsspec URI (s3://, gs://, memory://): the run then works on a local
    mirror that is pushed back only when the run succeeds (radsim.warehouse.storage).
    `verify` re-hashes every inbox file instead of trusting unchanged file stats.

    Wide on purpose: a Prefect flow's parameters are what a deployment sets and the UI shows; the settings
    themselves travel as one RunConfig.
    """
    from radsim.flows.config import resolve_config

    cfg = config if config is not None else resolve_config(
        {"paths.inbox": inbox, "paths.warehouse": warehouse}, config_path)
    inbox, warehouse = inbox or cfg.paths.inbox, warehouse or cfg.paths.warehouse
    if not inbox or not warehouse:
        raise UsageError("the pipeline needs an inbox and a warehouse (arguments or paths.* in radsim.toml)")
    keyer_from_env(demo=demo_key)  # no key, no run (DESIGN §3): before anything is pulled
    with closed_pipe_safe():  # a worker gone mid-run must not fail a run whose work is written
        with _storage(str(inbox), str(warehouse), cfg, quiet) as (inbox_dir, warehouse_dir):
            result = _run_pipeline(str(inbox_dir), str(warehouse_dir), retrain, cfg, demo_key, progress, quiet,
                                   verify)
        _show_remote(result, warehouse_dir, str(warehouse))
        report_run(result, "pipeline", str(warehouse), quiet)
    return result


@contextlib.contextmanager
def _storage(inbox: str, warehouse: str, cfg: RunConfig, quiet: bool) -> Iterator[tuple[Path, Path]]:
    """Local folders for the inbox (read only) and the warehouse (pushed back on success)."""
    from radsim.warehouse.storage import open_folder, require_local

    require_local("paths.truth", cfg.paths.truth)
    require_local("paths.vocabulary", cfg.paths.vocabulary)
    report = None if quiet else (lambda line: say(f"      {line}", quiet))
    with open_folder(inbox, writeback=False, must_exist=True, on_progress=report) as inbox_dir, \
            open_folder(warehouse, on_progress=report) as warehouse_dir:
        yield inbox_dir, warehouse_dir


def _show_remote(result: PipelineResult, local_root: Path, uri: str) -> None:
    """Outputs inside a mirrored warehouse are named by their URI, not by the local working copy."""
    from radsim.warehouse.storage import is_remote

    if not is_remote(uri):
        return
    for name, path in list(result.outputs.items()):
        with contextlib.suppress(ValueError):
            result.outputs[name] = uri.rstrip("/") + "/" + Path(path).relative_to(local_root).as_posix()


def _run_pipeline(inbox: str, warehouse: str, retrain: bool, cfg: RunConfig, demo_key: bool, progress: bool,
                  quiet: bool, verify: bool = False) -> PipelineResult:
    """The pipeline on local folders (the flow has resolved the configuration and the storage)."""
    from radsim.flows.config import save_config
    from radsim.warehouse.keycheck import check_warehouse_key
    from radsim.warehouse.ledger import has_unpublished
    from radsim.warehouse.registry import current_model

    started = time.perf_counter()
    keyer = keyer_from_env(demo=demo_key)
    layout = WarehouseLayout(Path(warehouse))
    check_warehouse_key(layout.root, keyer)  # before any stage writes anything
    layout.restricted.mkdir(parents=True, exist_ok=True)
    result = PipelineResult(layout)
    result.outputs["configuration"] = save_config(cfg, layout.root)
    run = RunContext(layout, cfg, result, demo_key, progress, quiet, keyer, cfg.quarantine_ceiling())

    exams, ledger, prints, todo = _ingest_step(run, inbox, verify)
    current = current_model(layout.models)
    stale = current is None or not layout.published.exists() or has_unpublished(ledger, current["model_version"])
    if todo.nothing_new and not retrain and not stale:
        _nothing_new(run, ledger, prints, current)
    else:
        label_status = _label_step(run, exams, prints, todo)
        shard_status = _shard_step(run, exams, todo)
        _model_step(run, ledger, prints, (label_status, shard_status), current is None or retrain)
    _reconcile(result)
    result.seconds = time.perf_counter() - started
    return result


def _ingest_step(run: RunContext, inbox: str, verify: bool) -> tuple[Any, Any, Any, Any]:
    """Read the inbox (unchanged folders from the index), keep exams.parquet, diff against the ledger."""
    from radsim.warehouse.inbox_index import INDEX_FILE

    layout, result, quiet = run.layout, run.result, run.quiet

    say(f"[1/6] ingesting {inbox}" + (" (--verify: every file re-read and re-hashed)" if verify else ""), quiet)
    index_path = layout.restricted / INDEX_FILE
    indexed = ingest_task(str(inbox), None if verify else str(index_path))
    ingested = indexed.result
    result.counts.append(ingested.counts)
    if indexed.folders:
        result.notes.append(f"inbox: {indexed.folders} exam folders, {indexed.folders_reused} unchanged by file stat "
                            f"(not opened)")
    quarantine_task(str(quarantine_file(layout)), quote(ingested.quarantine))
    result.run_reasons["ingest"] = reason_counts(ingested.quarantine)
    run.ceiling.check(ingested.counts, result.run_reasons["ingest"])
    exams_path = layout.exams
    merge_exams_task(quote(ingested.exams), str(exams_path))
    if indexed.index is not None and (indexed.index_changed or verify or not index_path.exists()):
        indexed.index.write(index_path)  # after exams.parquet: an index never names rows it lacks
    result.outputs["exams (restricted)"] = exams_path
    ledger, prints, todo = diff_task(quote(ingested.exams), str(layout.root), quote(indexed.files_stat), verify,
                                     indexed.stat_covers_reports)
    result.notes.append(todo.summary())
    say(f"      {todo.summary()}", quiet)
    return ingested.exams, ledger, prints, todo


def _nothing_new(run: RunContext, ledger: Any, prints: dict, current: dict | None) -> None:
    """Nothing changed: only touched-but-unchanged files move their stats in the ledger."""
    from radsim.warehouse.ledger import refresh_stats, write_ledger

    layout, result, quiet = run.layout, run.result, run.quiet

    for stage in ("label", "shard"):
        result.counts.append(StageCounts(stage, rows_in=len(prints), skipped=len(prints)))
    result.nothing_new = True
    result.model_version = current["model_version"] if current else None
    result.notes.append(f"nothing new: {len(prints)} exams unchanged since the last run; nothing relabelled, "
                        f"sharded or published")
    say(f"      {result.notes[-1]}", quiet)
    refreshed = refresh_stats(ledger, prints)
    if refreshed is not ledger:
        write_ledger(refreshed, layout.root)


def _label_step(run: RunContext, exams: Any, prints: dict, todo: Any) -> dict[str, str]:
    from radsim.warehouse.quarantine import file_reason_counts

    layout, result = run.layout, run.result
    say(f"[2/6] labelling {len(todo.to_label)} new or amended reports (label_reports flow)", run.quiet)
    counts, status, stage_quarantine = label_stage(layout, exams, prints, todo.to_label, run.cfg.paths.vocabulary,
                                                   1, run.progress, config=run.cfg)
    result.counts.append(counts)
    result.labelled = sorted(e for e, s in status.items() if s == "done")
    result.outputs["labels (restricted)"] = layout.labels
    quarantine_task(str(quarantine_file(layout)), [], stage_quarantine or "")
    result.run_reasons["label"] = file_reason_counts(stage_quarantine)
    run.ceiling.check(counts, result.run_reasons["label"])
    return status


def _shard_step(run: RunContext, exams: Any, todo: Any) -> dict[str, str]:
    from radsim.imaging.shards import QUARANTINE_FILE

    layout, result = run.layout, run.result
    say(f"[3/6] sharding the images of {len(todo.to_shard)} new exams (build_shards flow)", run.quiet)
    counts, status, stage_reasons = shard_stage(run, exams, list(todo.to_shard))
    result.counts.append(counts)
    result.sharded = list(todo.to_shard)
    result.outputs["shards"] = layout.shards
    reasons = quarantine_task(str(quarantine_file(layout)), [], str(layout.restricted / QUARANTINE_FILE))
    result.run_reasons["shard"] = dict(stage_reasons)
    run.ceiling.check(counts, stage_reasons)
    result.outputs["quarantine (restricted)"] = quarantine_file(layout)
    result.notes.append("quarantined by reason: " + (", ".join(f"{k}={v}" for k, v in sorted(reasons.items()))
                                                     or "none"))
    return status


def _model_step(run: RunContext, ledger: Any, prints: dict, statuses: tuple[dict[str, str], dict[str, str]],
                train: bool) -> None:
    """Train/publish/evaluate, then record every exam's (label, shard) statuses in the ledger and clear the scratch."""
    from radsim.warehouse.ledger import ledger_path, refresh_stats, update_ledger, write_ledger

    layout, keyer, result = run.layout, run.keyer, run.result
    label_status, shard_status = statuses

    keyed = update_ledger(ledger, prints, keyer, label_status={}, shard_status={}, published_version=None,
                          published=())  # exam_id → exam_key for every exam, new ones included
    published_keys = train_publish_evaluate(run, keyed, train)
    key_of = dict(zip(keyed.column("exam_id").to_pylist(), keyed.column("exam_key").to_pylist()))
    now_published = [e for e in prints if key_of[e] in published_keys]
    write_ledger(refresh_stats(update_ledger(ledger, prints, keyer, label_status=label_status,
                                             shard_status=shard_status, published_version=result.model_version,
                                             published=now_published), prints), layout.root)
    result.outputs["ledger (restricted)"] = ledger_path(layout.root)
    shutil.rmtree(layout.work, ignore_errors=True)


@flow(name="train")
def train(warehouse: str | None = None, config: RunConfig | None = None, config_path: str | None = None,
          demo_key: bool = False, progress: bool = False, quiet: bool = False) -> PipelineResult:
    """Retrain from all shards; promote only a model that is not worse; re-embed and re-publish every exam.

    A refused candidate leaves the current model (and the published table) as they were, and
    current.json's "last_refused" says why.
    """
    from radsim.flows.config import resolve_config

    cfg = config if config is not None else resolve_config({"paths.warehouse": warehouse}, config_path)
    warehouse = warehouse or cfg.paths.warehouse
    if not warehouse:
        raise UsageError("train needs a warehouse (argument or paths.warehouse in radsim.toml)")
    from radsim.warehouse.storage import open_folder, require_local

    require_local("paths.truth", cfg.paths.truth)
    with closed_pipe_safe():
        with open_folder(str(warehouse)) as warehouse_dir:
            result = _run_train(warehouse_dir, cfg, demo_key, progress, quiet)
        _show_remote(result, warehouse_dir, str(warehouse))
        report_run(result, "train", str(warehouse), quiet)
    return result


def _run_train(warehouse: Path, cfg: RunConfig, demo_key: bool, progress: bool, quiet: bool) -> PipelineResult:
    from radsim.flows.config import save_config
    from radsim.warehouse.ledger import mark_published, read_ledger, write_ledger
    from radsim.warehouse.registry import current_model

    started = time.perf_counter()
    layout = WarehouseLayout(Path(warehouse))
    if not (layout.shards / MANIFEST_FILE).exists():
        raise UsageError(f"{layout.shards} holds no shards yet: run the pipeline first")
    keyer_from_env(demo=demo_key)
    result = PipelineResult(layout)
    result.outputs["configuration"] = save_config(cfg, layout.root)
    before = current_model(layout.models)
    ledger = read_ledger(layout.root)
    say(f"retraining from all shards; the current model is {before['model_version'] if before else 'none'}", quiet)
    published_keys = train_publish_evaluate(RunContext(layout, cfg, result, demo_key, progress, quiet), ledger, True)
    write_ledger(mark_published(ledger, published_keys, result.model_version), layout.root)
    _reconcile(result)
    result.seconds = time.perf_counter() - started
    return result


def _reconcile(result: PipelineResult) -> None:
    for counts in result.counts:
        counts.check()
