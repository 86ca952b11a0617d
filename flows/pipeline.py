"""The `pipeline` flow: what the schedule runs on new exams (DESIGN §1, §4, §11, §12).

ingest (inbox folder or manifest) → ledger diff → label new/amended reports → shard new images
(write_shards is incremental) → train when no current model exists or when asked (promotion
rule) → embed every sharded image with the current model → publish (the current version, all
rows, atomically) → evaluate when a validated subset (`truth`) is configured.

The ledger decides what runs, not Prefect's cache; the logic lives in radsim.warehouse and the
stage packages, this module only chains it and makes the artifacts.
"""
from __future__ import annotations

from datetime import datetime, timezone

import contextlib
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radsim.flows.prefect_env import configure_prefect

configure_prefect()  # before prefect is imported

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote  # big arguments: Prefect must not walk every row
from radsim.data_contracts import (
    StageCounts,
    UsageError,
    keyer_from_env,
    load_contract,
    load_vocabulary,
    merge_quarantine,
    quarantine_table,
    write_parquet_atomic,
)
from radsim.warehouse.layout import WarehouseLayout

@dataclass
class PipelineResult:
    layout: WarehouseLayout
    counts: list[StageCounts] = field(default_factory=list)
    outputs: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    headline: list[str] = field(default_factory=list)
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


def _say(line: str, quiet: bool) -> None:
    if not quiet:
        print(line, flush=True)


def _in_flow_run() -> bool:
    from prefect.context import FlowRunContext

    return FlowRunContext.get() is not None


def _table_artifact(key: str, table: list[dict[str, Any]], description: str) -> None:
    if not _in_flow_run():
        return
    try:
        from prefect.artifacts import create_table_artifact

        create_table_artifact(key=key, table=table, description=description)
    except Exception:  # noqa: BLE001 - an artifact is a nicety; the warehouse holds the outputs
        pass


@task(name="ingest-inbox", cache_policy=NO_CACHE)
def ingest_task(inbox: str, index_path: str | None) -> Any:
    """The inbox's exams; with an index, folders whose stats are unchanged are not opened."""
    from radsim.warehouse.inbox import ingest_inbox_indexed
    from radsim.warehouse.inbox_index import InboxIndex

    return ingest_inbox_indexed(inbox, InboxIndex.read(index_path) if index_path else None)


@task(name="merge-exams", cache_policy=NO_CACHE)
def merge_exams_task(exams: Any, path: str) -> Any:
    """restricted/exams.parquet keeps exams seen before (their inbox folder may be gone) plus today's.

    Rewritten only when something changed: an unchanged inbox writes nothing.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    contract = load_contract("exams")
    p = Path(path)
    order = [("exam_id", "ascending"), ("image_index", "ascending")]
    if p.exists():
        old = contract.validate(pq.read_table(p))
        today = exams.cast(old.schema).sort_by(order)
        mine = pc.is_in(old.column("exam_id"), value_set=exams.column("exam_id").unique())
        if old.filter(mine).sort_by(order).equals(today):
            return old
        exams_all = pa.concat_tables([old.filter(pc.invert(mine)), today])
    else:
        exams_all = exams
    write_parquet_atomic(exams_all.sort_by(order), p, contract)
    return exams_all


@task(name="ledger-diff", cache_policy=NO_CACHE)
def diff_task(exams: Any, warehouse: str, files_stat: dict[str, str | None], verify: bool,
              stat_covers_reports: bool = False) -> tuple[Any, Any, Any]:
    from radsim.warehouse.ledger import diff, fingerprints, read_ledger

    ledger = read_ledger(warehouse)
    prints = fingerprints(exams, files_stat, ledger, verify=verify, stat_covers_reports=stat_covers_reports)
    return ledger, prints, diff(ledger, prints)


@task(name="register-and-promote", cache_policy=NO_CACHE)
def promote_task(models: str, trained_dir: str, min_val_patients: int = 30, force: bool = False) -> dict[str, Any]:
    from radsim.warehouse.registry import register_model
    from radsim.warehouse.gates import GatePolicy
    from radsim.warehouse.promotion import promote_through_gates

    model_dir = register_model(trained_dir, models)
    return promote_through_gates(models, model_dir.name, policy=GatePolicy(min_val_patients=min_val_patients),
                                 force=force).as_dict()


@task(name="relabel-embedded", cache_policy=NO_CACHE)
def relabel_task(embedded: Any, labels_path: str, ledger: Any) -> Any:
    """Published label values come from the warehouse's current labels (amended reports included)."""
    import pyarrow.parquet as pq
    from radsim.warehouse.labels import label_values_by_key, relabel

    if not Path(labels_path).exists():
        return embedded
    keys = dict(zip(ledger.column("exam_id").to_pylist(), ledger.column("exam_key").to_pylist()))
    current = label_values_by_key(pq.read_table(labels_path), keys, embedded.vocabulary["findings"])
    embedded.label_values = relabel(embedded.label_values, embedded.exam_keys, current)
    return embedded


@task(name="collect-quarantine", cache_policy=NO_CACHE)
def quarantine_task(path: str, records: list, *others: str) -> dict[str, int]:
    """One restricted quarantine table for the warehouse, whatever stage refused the record."""
    import pyarrow.parquet as pq

    p = Path(path)
    table = quarantine_table(records)
    before = pq.read_table(p) if p.exists() else None
    if before is not None:
        table = merge_quarantine(table, before)
    for other in others:
        if other and Path(other).exists():
            table = merge_quarantine(table, pq.read_table(other))
    if before is None or table.num_rows != before.num_rows:  # an unchanged table is not rewritten
        write_parquet_atomic(table, p, load_contract("quarantine"))
    reasons: dict[str, int] = {}
    for code in table.column("reason_code").to_pylist():
        reasons[code] = reasons.get(code, 0) + 1
    return reasons


def _label(layout: WarehouseLayout, exams: Any, prints: dict, ids: list[str], vocabulary_path: str | None,
           workers: int, progress: bool, config: dict[str, Any] | None = None
           ) -> tuple[StageCounts, dict[str, str], str | None]:
    """Label the exams in `ids` that have a report; merge into restricted/labels.parquet.

    With `config` (the resolved configuration) the reports are labelled on its runner: "threads"
    labels in this process as before (`workers` processes), "processes" uses runner.workers local
    processes, "dask" sends the exam batches to the cluster (the same labels either way).
    """
    import pyarrow.parquet as pq
    from radsim.flows.label_reports import run_label_reports
    from radsim.warehouse.inbox import exams_table_for
    from radsim.warehouse.labels import merge_labels

    vocabulary = load_vocabulary(vocabulary_path)
    with_report = [e for e in ids if prints[e].has_report]
    status = {e: "awaiting_report" for e in ids if not prints[e].has_report}
    labels_path = layout.restricted / "labels.parquet"
    counts = StageCounts("label", rows_in=len(prints), skipped=len(prints) - len(with_report))
    qpath = None
    new = None
    if with_report:
        layout.work.mkdir(parents=True, exist_ok=True)
        batch = write_parquet_atomic(exams_table_for(exams, set(with_report)), layout.work / "label-batch.parquet")
        out = layout.work / "labels-batch.parquet"
        runner = (config or {}).get("runner.task_runner") or "threads"
        dask_address = (config or {}).get("runner.dask_address")
        if runner != "threads" or dask_address:
            workers = int((config or {}).get("runner.workers") or workers)
        summary = run_label_reports(str(batch), str(out), runner=runner, workers=workers, dask_address=dask_address,
                                    vocabulary_path=vocabulary_path, progress=progress,
                                    batch_size=(config or {}).get("runner.label_batch_size") or 512)
        new = pq.read_table(out)
        labelled = set(new.column("exam_id").to_pylist())
        status.update({e: ("done" if e in labelled else "quarantined") for e in with_report})
        counts.rows_out, counts.quarantined = summary.counts.rows_out, summary.counts.quarantined
        counts.skipped = counts.rows_in - counts.rows_out - counts.quarantined  # extra image rows are not exams
        qpath = str(summary.quarantine_path)
    merge_labels(labels_path, new, ids, vocabulary)
    return counts.check(), status, qpath


@flow(name="pipeline")
def pipeline(inbox: str | None = None, warehouse: str | None = None, retrain: bool = False,
             config: dict[str, Any] | None = None, config_path: str | None = None, demo_key: bool = False,
             progress: bool = False, quiet: bool = False, verify: bool = False) -> PipelineResult:
    """One scheduled run over INBOX into WAREHOUSE; the ledger makes a rerun do only what is new.

    `config` is an already resolved configuration (radsim run); deployments pass `config_path`
    (a radsim.toml) instead, and INBOX/WAREHOUSE default to its paths.inbox/paths.warehouse.
    Either may be an fsspec URI (s3://, gs://, memory://): the run then works on a local
    mirror that is pushed back only when the run succeeds (radsim.warehouse.storage).
    `verify` re-hashes every inbox file instead of trusting unchanged file stats.
    """
    from radsim.warehouse.config import resolve_config

    cfg = dict(config) if config is not None else resolve_config(
        {"paths.inbox": inbox, "paths.warehouse": warehouse}, config_path)
    inbox, warehouse = inbox or cfg.get("paths.inbox"), warehouse or cfg.get("paths.warehouse")
    if not inbox or not warehouse:
        raise UsageError("the pipeline needs an inbox and a warehouse (arguments or paths.* in radsim.toml)")
    keyer_from_env(demo=demo_key)  # no key, no run (DESIGN §3): before anything is pulled
    with _storage(str(inbox), str(warehouse), cfg, quiet) as (inbox_dir, warehouse_dir):
        result = _run_pipeline(str(inbox_dir), str(warehouse_dir), retrain, cfg, demo_key, progress, quiet, verify)
    _show_remote(result, warehouse_dir, str(warehouse))
    return result


@contextlib.contextmanager
def _storage(inbox: str, warehouse: str, cfg: dict[str, Any], quiet: bool) -> Iterator[tuple[Path, Path]]:
    """Local folders for the inbox (read only) and the warehouse (pushed back on success)."""
    from radsim.warehouse.storage import open_folder, require_local

    for key in ("paths.truth", "paths.vocabulary"):
        require_local(key, cfg.get(key))
    say = None if quiet else (lambda line: _say(f"      {line}", quiet))
    with open_folder(inbox, writeback=False, must_exist=True, on_progress=say) as inbox_dir, \
            open_folder(warehouse, on_progress=say) as warehouse_dir:
        yield inbox_dir, warehouse_dir


def _show_remote(result: PipelineResult, local_root: Path, uri: str) -> None:
    """Outputs inside a mirrored warehouse are named by their URI, not by the local working copy."""
    from radsim.warehouse.storage import is_remote

    if not is_remote(uri):
        return
    for name, path in list(result.outputs.items()):
        with contextlib.suppress(ValueError):
            result.outputs[name] = uri.rstrip("/") + "/" + Path(path).relative_to(local_root).as_posix()


def _run_pipeline(inbox: str, warehouse: str, retrain: bool, cfg: dict[str, Any], demo_key: bool, progress: bool,
                  quiet: bool, verify: bool = False) -> PipelineResult:
    """The pipeline on local folders (the flow has resolved the configuration and the storage)."""
    from radsim.flows.build_shards import run_build_shards
    from radsim.imaging.shards import QUARANTINE_FILE
    from radsim.warehouse.registry import current_model
    from radsim.warehouse.config import quarantine_ceiling, save_config
    from radsim.warehouse.inbox_index import INDEX_FILE
    from radsim.warehouse.keycheck import check_warehouse_key
    from radsim.warehouse.ledger import ledger_path, refresh_stats, update_ledger, write_ledger

    started = time.perf_counter()
    keyer = keyer_from_env(demo=demo_key)
    layout = WarehouseLayout(Path(warehouse))
    check_warehouse_key(layout.root, keyer)  # before any stage writes anything
    ceiling = quarantine_ceiling(cfg)
    layout.restricted.mkdir(parents=True, exist_ok=True)
    result = PipelineResult(layout)
    result.outputs["configuration"] = save_config(cfg, layout.root)
    quarantine_path = str(layout.restricted / "quarantine.parquet")

    _say(f"[1/6] ingesting {inbox}" + (" (--verify: every file re-read and re-hashed)" if verify else ""), quiet)
    index_path = layout.restricted / INDEX_FILE
    indexed = ingest_task(str(inbox), None if verify else str(index_path))
    ingested = indexed.result
    result.counts.append(ingested.counts)
    if indexed.folders:
        result.notes.append(f"inbox: {indexed.folders} exam folders, {indexed.folders_reused} unchanged by file stat "
                            f"(not opened)")
    quarantine_task(quarantine_path, quote(ingested.quarantine))
    ceiling.check(ingested.counts, _reasons_of(ingested.quarantine))
    exams_path = layout.restricted / "exams.parquet"
    merge_exams_task(quote(ingested.exams), str(exams_path))
    if indexed.index is not None and (indexed.index_changed or verify or not index_path.exists()):
        indexed.index.write(index_path)  # after exams.parquet: an index never names rows it lacks
    result.outputs["exams (restricted)"] = exams_path
    ledger, prints, todo = diff_task(quote(ingested.exams), str(layout.root), quote(indexed.files_stat), verify,
                                     indexed.stat_covers_reports)
    result.notes.append(todo.summary())
    _say(f"      {todo.summary()}", quiet)

    current = current_model(layout.models)
    stale = current is None or not layout.published.exists() or _unpublished(ledger, current["model_version"])
    if todo.nothing_new and not retrain and not stale:
        for stage in ("label", "shard"):
            result.counts.append(StageCounts(stage, rows_in=len(prints), skipped=len(prints)))
        result.nothing_new = True
        result.model_version = current["model_version"] if current else None
        result.notes.append(f"nothing new: {len(prints)} exams unchanged since the last run; nothing relabelled, "
                            f"sharded or published")
        _say(f"      {result.notes[-1]}", quiet)
        refreshed = refresh_stats(ledger, prints)  # touched but unchanged files: only their stats move
        if refreshed is not ledger:
            write_ledger(refreshed, layout.root)
        _reconcile(result)
        result.seconds = time.perf_counter() - started
        return result

    _say(f"[2/6] labelling {len(todo.to_label)} new or amended reports (label_reports flow)", quiet)
    label_counts, label_status, label_q = _label(layout, ingested.exams, prints, todo.to_label,
                                                 cfg.get("paths.vocabulary"), 1, progress, config=cfg)
    result.counts.append(label_counts)
    result.labelled = sorted(e for e, s in label_status.items() if s == "done")
    result.outputs["labels (restricted)"] = layout.restricted / "labels.parquet"
    quarantine_task(quarantine_path, [], label_q or "")
    ceiling.check(label_counts, _reasons_in(label_q))

    _say(f"[3/6] sharding the images of {len(todo.to_shard)} new exams (build_shards flow)", quiet)
    shard_status: dict[str, str] = {}
    from radsim.warehouse.inbox import exams_table_for

    n_images = ingested.exams.num_rows
    run_started = datetime.now(timezone.utc)
    shard_quarantine = layout.restricted / QUARANTINE_FILE
    shard_reasons: dict[str, int] = {}
    if todo.to_shard:
        layout.work.mkdir(parents=True, exist_ok=True)
        batch = write_parquet_atomic(exams_table_for(ingested.exams, set(todo.to_shard)),
                                     layout.work / "shard-batch.parquet")
        sharded = run_build_shards(str(batch), str(layout.restricted / "labels.parquet"), str(layout.shards),
                                   runner=cfg["runner.task_runner"], workers=cfg["runner.workers"],
                                   dask_address=cfg.get("runner.dask_address"),
                                   image_size=cfg["imaging.image_size"], demo_key=demo_key,
                                   vocabulary=cfg.get("paths.vocabulary"), quarantine=str(shard_quarantine),
                                   batch_size=cfg.get("runner.decode_batch_size") or 32, progress=progress,
                                   compact_after=cfg["imaging.compact_after"])
        counts = StageCounts("shard", n_images, sharded["rows_out"], sharded["quarantined"],
                             n_images - sharded["rows_out"] - sharded["quarantined"])
        shard_reasons = sharded.get("quarantine_reasons") or {}
        import pyarrow.parquet as pq

        in_manifest = set(pq.read_table(layout.shards / "manifest.parquet", columns=["exam_key"])
                          .column("exam_key").to_pylist()) if (layout.shards / "manifest.parquet").exists() else set()
        from radsim.imaging.shards import shard_refusals

        refused = shard_refusals(shard_quarantine, run_started)
        shard_status = {e: ("done" if keyer.exam_key(e) in in_manifest and e not in refused else "quarantined")
                        for e in todo.to_shard}
    else:
        counts = StageCounts("shard", n_images, 0, 0, n_images)
    result.counts.append(counts.check())
    result.sharded = list(todo.to_shard)
    result.outputs["shards"] = layout.shards

    reasons = quarantine_task(quarantine_path, [], str(shard_quarantine))
    ceiling.check(counts, shard_reasons)
    result.outputs["quarantine (restricted)"] = layout.restricted / "quarantine.parquet"
    result.notes.append("quarantined by reason: " + (", ".join(f"{k}={v}" for k, v in sorted(reasons.items()))
                                                     or "none"))

    keyed = update_ledger(ledger, prints, keyer, label_status={}, shard_status={}, published_version=None,
                          published=())  # exam_id → exam_key for every exam, new ones included
    published_keys = _train_publish_evaluate(layout, cfg, keyed, current is None or retrain, demo_key, progress,
                                             quiet, result)
    key_of = dict(zip(keyed.column("exam_id").to_pylist(), keyed.column("exam_key").to_pylist()))
    now_published = [e for e in prints if key_of[e] in published_keys]
    write_ledger(refresh_stats(update_ledger(ledger, prints, keyer, label_status=label_status,
                                             shard_status=shard_status, published_version=result.model_version,
                                             published=now_published), prints), layout.root)
    result.outputs["ledger (restricted)"] = ledger_path(layout.root)
    shutil.rmtree(layout.work, ignore_errors=True)
    _reconcile(result)
    result.seconds = time.perf_counter() - started
    return result


def _train_publish_evaluate(layout: WarehouseLayout, cfg: dict[str, Any], ledger: Any, train: bool, demo_key: bool,
                            progress: bool, quiet: bool, result: PipelineResult) -> set[str]:
    """(Re)train and promote when asked, then embed the shards with the current model, publish, evaluate.

    Without a retrain, shards whose rows the current version already published are reused
    (radsim.model.publish.plan_reuse); the published table is the same as a full re-embed's.

    Returns the published exam keys. Shared by `pipeline` and `train`.
    """
    from radsim.flows.publish_embeddings import (
        _artifacts,
        embed_task,
        evaluate_task,
        prune_task,
        publish_task,
        reuse_plan_task,
    )
    from radsim.flows.train_embedding import train_embedding
    from radsim.warehouse.registry import current_model
    from radsim.warehouse.config import launch_options, training_options

    current = current_model(layout.models)
    readiness = _readiness(layout, cfg) if train or current is None else None
    if readiness is not None and not readiness.ready:
        result.deferred = readiness.message
        result.notes.append(readiness.message)
        _say(f"[4/6] {readiness.message}", quiet)
        if current is None:
            _say("[5/6] nothing to embed or publish until a first model is trained", quiet)
            _say("[6/6] evaluation skipped (no model yet)", quiet)
            return set()
        train = False  # a retrain asked for on too little data: the current model stays
    if train or current is None:
        assert readiness is not None
        _say("[4/6] training the embedding network (train_embedding flow)", quiet)
        options = {**training_options(cfg), "progress": progress}
        if readiness.batch_size != readiness.requested:
            options["batch_size"] = readiness.batch_size
            result.notes.append(readiness.message)
            _say(f"      {readiness.message}", quiet)
        trained = train_embedding(layout.shards, layout.models / f"training-{time.strftime('%Y%m%d%H%M%S')}", options,
                                  launch=launch_options(cfg))
        result.promotion = promote_task(str(layout.models), trained["model_dir"],
                                        int(cfg.get("model.min_val_patients", 30)), bool(cfg.get("model.force_promote")))
        result.notes += [line.strip() for line in trained["summary"].splitlines() if "model folder" not in line]
        result.notes.append(f"model {result.promotion['candidate']}: {result.promotion['reason']}")
        result.metrics["validation"] = trained.get("metrics") or {}
        result.metrics["untrained_encoder"] = (trained.get("baseline_metrics") or {}).get("untrained_encoder") or {}
        current = current_model(layout.models)
        if current is None:
            _say(f"      {result.promotion['reason']}", quiet)
            _say("[5/6] nothing published: no model has passed the gates yet (--force-promote to publish anyway)",
                 quiet)
            return set()
    else:
        _say(f"[4/6] keeping the current model {current['model_version']} (no retrain asked)", quiet)
    assert current is not None
    version = current["model_version"]
    model_dir = layout.models / version
    result.model_version = version
    result.outputs["model"] = model_dir

    # Shards are append-only and a version's weights never change: rows this version already
    # published are reused and only new shards embedded. A retrain embeds everything.
    plan = None if train else reuse_plan_task(str(model_dir), str(layout.shards), str(layout.published))
    if plan is not None and plan.reused_shards:
        _say(f"[5/6] embedding {len(plan.embed)} new shards with {version} (reusing {plan.reused_shards} "
             f"published) and publishing", quiet)
    else:
        why = f" ({plan.note})" if plan is not None else " (a training run: nothing reused)"
        _say(f"[5/6] embedding every sharded image with {version}{why} and publishing", quiet)
    runner, dask_address = cfg.get("runner.task_runner") or "threads", cfg.get("runner.dask_address")
    if runner != "threads" or dask_address:  # groups of shards as tasks on the runner, CPU fp32 like a local run
        from radsim.flows.publish_embeddings import run_embed_shards

        loaded, embedded = run_embed_shards(str(model_dir), str(layout.shards), runner=runner,
                                            workers=cfg.get("runner.workers") or 2, dask_address=dask_address,
                                            shards_per_task=cfg.get("runner.shards_per_task") or 1, batch_size=256,
                                            device="cpu", progress=progress, reuse=plan)
    else:  # one task: torch already uses every core of this process, so threads would only add overhead
        loaded, embedded = embed_task(str(model_dir), str(layout.shards), 256, "auto", quote(plan))
    shards_total = len(embedded.shard_digests)
    result.metrics["embedding"] = {"shards_embedded": shards_total - embedded.reused_shards,
                                   "shards_reused": embedded.reused_shards, "rows_embedded":
                                   embedded.rows - embedded.reused_rows, "rows_reused": embedded.reused_rows}
    result.notes.append(f"embedding: {shards_total - embedded.reused_shards} shards embedded "
                        f"({embedded.rows - embedded.reused_rows} images), {embedded.reused_shards} reused from "
                        f"published {version} ({embedded.reused_rows} rows)"
                        + ("" if embedded.reused_shards else
                           f"; {plan.note if plan is not None else 'a training run: nothing reused'}"))
    embedded = relabel_task(quote(embedded), str(layout.restricted / "labels.parquet"), ledger)
    published = publish_task(quote(embedded), loaded, str(layout.published), True,
                             f"the current model ({current.get('reason') or 'promoted'})")
    result.published_rows = published.rows
    result.outputs["published embeddings"] = layout.published / "embeddings"
    keep = int(cfg.get("publish.keep_versions") or 0)
    if keep:
        pruned = prune_task(str(layout.published), keep, str(layout.index))
        result.notes.append(pruned.summary())

    truth = cfg.get("paths.truth")
    if truth:
        _say("[6/6] evaluating against the validated subset", quiet)
        report_dir = layout.reports / version
        evaluation = evaluate_task(str(layout.published), str(report_dir), version, str(truth), demo_key,
                                   str(layout.shards))
        _artifacts(evaluation)
        result.headline = list(evaluation.headline())
        result.outputs["evaluation report"] = report_dir / "report.md"
    else:
        _say("[6/6] no validated subset configured (paths.truth): evaluation skipped", quiet)
    return set(embedded.exam_keys)


def _readiness(layout: WarehouseLayout, cfg: dict[str, Any]) -> Any:
    """Enough labelled data for a first model (or a retrain)? radsim.model.readiness decides."""
    from radsim.model.readiness import training_readiness
    from radsim.model.train import DEFAULTS

    return training_readiness(layout.shards, int(cfg.get("model.batch_size") or DEFAULTS["batch_size"]))


@flow(name="train")
def train(warehouse: str | None = None, config: dict[str, Any] | None = None, config_path: str | None = None,
          demo_key: bool = False, progress: bool = False, quiet: bool = False) -> PipelineResult:
    """Retrain from all shards; promote only a model that is not worse; re-embed and re-publish every exam.

    A refused candidate leaves the current model (and the published table) as they were, and
    current.json's "last_refused" says why.
    """
    from radsim.warehouse.config import resolve_config

    cfg = dict(config) if config is not None else resolve_config({"paths.warehouse": warehouse}, config_path)
    warehouse = warehouse or cfg.get("paths.warehouse")
    if not warehouse:
        raise UsageError("train needs a warehouse (argument or paths.warehouse in radsim.toml)")
    from radsim.warehouse.storage import open_folder, require_local

    require_local("paths.truth", cfg.get("paths.truth"))
    with open_folder(str(warehouse)) as warehouse_dir:
        result = _run_train(warehouse_dir, cfg, demo_key, progress, quiet)
    _show_remote(result, warehouse_dir, str(warehouse))
    return result


def _run_train(warehouse: Path, cfg: dict[str, Any], demo_key: bool, progress: bool, quiet: bool) -> PipelineResult:
    from radsim.warehouse.registry import current_model
    from radsim.warehouse.config import save_config
    from radsim.warehouse.ledger import mark_published, read_ledger, write_ledger

    started = time.perf_counter()
    layout = WarehouseLayout(Path(warehouse))
    if not (layout.shards / "manifest.parquet").exists():
        raise UsageError(f"{layout.shards} holds no shards yet: run the pipeline first")
    keyer_from_env(demo=demo_key)
    result = PipelineResult(layout)
    result.outputs["configuration"] = save_config(cfg, layout.root)
    before = current_model(layout.models)
    ledger = read_ledger(layout.root)
    _say(f"retraining from all shards; the current model is {before['model_version'] if before else 'none'}", quiet)
    published_keys = _train_publish_evaluate(layout, cfg, ledger, True, demo_key, progress, quiet, result)
    write_ledger(mark_published(ledger, published_keys, result.model_version), layout.root)
    _reconcile(result)
    result.seconds = time.perf_counter() - started
    return result


def _unpublished(ledger: Any, version: str) -> bool:
    """Does an exam that is sharded lack rows under the current version?"""
    import pyarrow.compute as pc

    done = pc.equal(ledger.column("shard_status"), "done")
    other = pc.fill_null(pc.not_equal(ledger.column("published_version"), version), True)
    return bool(pc.any(pc.and_(done, other)).as_py())


def _reasons_in(path: str | None) -> dict[str, int]:
    """Reason counts of one stage's quarantine file (this run's refusals)."""
    if not path or not Path(path).exists():
        return {}
    import pyarrow.parquet as pq

    out: dict[str, int] = {}
    for code in pq.read_table(path, columns=["reason_code"]).column("reason_code").to_pylist():
        out[code] = out.get(code, 0) + 1
    return out


def _reasons_of(records: list) -> dict[str, int]:
    out: dict[str, int] = {}
    for rec in records:
        out[rec.reason_code] = out.get(rec.reason_code, 0) + 1
    return out


def _reconcile(result: PipelineResult) -> None:
    for counts in result.counts:
        counts.check()
    _table_artifact("pipeline-reconciliation", [c.as_dict() for c in result.counts],
                    "rows in = rows out + quarantined + skipped (already processed), per stage; "
                    + "; ".join(result.notes[:1]))
