"""The pipeline's Prefect tasks: each wraps one plain function of radsim.warehouse or a stage package.

Messages, artifacts and the label stage's choice of runner also live here, so that the flows in
flows/pipeline.py and flows/pipeline_model.py read as the ordered list of their steps.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from radsim.flows.prefect_env import configure_prefect

configure_prefect()  # before prefect is imported

from prefect import task
from prefect.cache_policies import NO_CACHE

from radsim.data_contracts import StageCounts, load_vocabulary, write_parquet_atomic
from radsim.flows.run_config import RunConfig
from radsim.flows.run_context import RunContext
from radsim.warehouse.layout import WarehouseLayout


@task(name="ingest-inbox", cache_policy=NO_CACHE)
def ingest_task(inbox: str, index_path: str | None) -> Any:
    """The inbox's exams; with an index, folders whose stats are unchanged are not opened."""
    from radsim.warehouse.inbox import ingest_inbox_indexed
    from radsim.warehouse.inbox_index import InboxIndex

    return ingest_inbox_indexed(inbox, InboxIndex.read(index_path) if index_path else None)


@task(name="merge-exams", cache_policy=NO_CACHE)
def merge_exams_task(exams: Any, path: str) -> Any:
    from radsim.warehouse.exams import merge_exams

    return merge_exams(exams, path)


@task(name="ledger-diff", cache_policy=NO_CACHE)
def diff_task(exams: Any, warehouse: str, files_stat: dict[str, str | None], verify: bool,
              stat_covers_reports: bool = False) -> tuple[Any, Any, Any]:
    from radsim.warehouse.ledger import diff, fingerprints, read_ledger

    ledger = read_ledger(warehouse)
    prints = fingerprints(exams, files_stat, ledger, verify=verify, stat_covers_reports=stat_covers_reports)
    return ledger, prints, diff(ledger, prints)


@task(name="register-and-promote", cache_policy=NO_CACHE)
def promote_task(models: str, trained_dir: str, min_val_patients: int = 30, force: str | None = None) -> dict[str, Any]:
    from radsim.flows.train_embedding import card_artifact
    from radsim.model.gates import GatePolicy
    from radsim.model.promotion import promote_through_gates
    from radsim.warehouse.card import read_card
    from radsim.warehouse.registry import register_model

    model_dir = register_model(trained_dir, models)
    decision = promote_through_gates(models, model_dir.name, policy=GatePolicy(min_val_patients=min_val_patients),
                                     force=force)
    card_artifact(model_dir.name, read_card(model_dir).__dict__)  # again, now with the gates' decision
    return decision.as_dict()


@task(name="relabel-embedded", cache_policy=NO_CACHE)
def relabel_task(embedded: Any, labels_path: str, ledger: Any) -> Any:
    from radsim.warehouse.labels import relabel_from_file

    return relabel_from_file(embedded, labels_path, ledger)


@task(name="collect-quarantine", cache_policy=NO_CACHE)
def quarantine_task(path: str, records: list, *others: str) -> dict[str, int]:
    from radsim.warehouse.quarantine import collect_quarantine

    return collect_quarantine(path, records, *others)


def label_stage(layout: WarehouseLayout, exams: Any, prints: dict, ids: list[str], vocabulary_path: str | None,
                workers: int, progress: bool, config: RunConfig | None = None
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
    counts = StageCounts("label", rows_in=len(prints), skipped=len(prints) - len(with_report))
    qpath, new = None, None
    if with_report:
        layout.work.mkdir(parents=True, exist_ok=True)
        batch = write_parquet_atomic(exams_table_for(exams, set(with_report)), layout.work / "label-batch.parquet")
        out = layout.work / "labels-batch.parquet"
        config = config or RunConfig()
        summary = run_label_reports(str(batch), str(out), config.label_config(vocabulary_path, workers),
                                    runner=config.runner.task_runner, dask_address=config.runner.dask_address,
                                    progress=progress)
        new = pq.read_table(out)
        labelled = set(new.column("exam_id").to_pylist())
        status.update({e: ("done" if e in labelled else "quarantined") for e in with_report})
        counts.rows_out, counts.quarantined = summary.counts.rows_out, summary.counts.quarantined
        counts.skipped = counts.rows_in - counts.rows_out - counts.quarantined  # extra image rows are not exams
        qpath = str(summary.quarantine_path)
    merge_labels(layout.labels, new, ids, vocabulary)
    return counts.check(), status, qpath


def shard_stage(run: RunContext, exams: Any, to_shard: list[str]) -> tuple[StageCounts, dict[str, str], dict[str, int]]:
    """Shard the images of the exams in `to_shard` (build_shards flow): counts, ledger statuses, reasons."""
    from datetime import UTC, datetime

    from radsim.flows.build_shards import run_build_shards
    from radsim.imaging.shards import QUARANTINE_FILE, shard_refusals
    from radsim.warehouse.inbox import exams_table_for
    from radsim.warehouse.ledger import shard_statuses

    layout, cfg = run.layout, run.cfg
    n_images = exams.num_rows
    if not to_shard:
        return StageCounts("shard", n_images, 0, 0, n_images).check(), {}, {}
    run_started = datetime.now(UTC)
    shard_quarantine = layout.restricted / QUARANTINE_FILE
    layout.work.mkdir(parents=True, exist_ok=True)
    batch = write_parquet_atomic(exams_table_for(exams, set(to_shard)), layout.work / "shard-batch.parquet")
    sharded = run_build_shards(str(batch), str(layout.labels), str(layout.shards),
                               runner=cfg.runner.task_runner, workers=cfg.runner.workers,
                               dask_address=cfg.runner.dask_address, demo_key=run.demo_key,
                               vocabulary=cfg.paths.vocabulary, quarantine=str(shard_quarantine),
                               progress=run.progress, batch_size=cfg.runner.decode_batch_size,
                               **cfg.imaging.model_dump())
    counts = StageCounts("shard", n_images, sharded["rows_out"], sharded["quarantined"],
                         n_images - sharded["rows_out"] - sharded["quarantined"])
    status = shard_statuses(to_shard, run.keyer, layout.shards, shard_refusals(shard_quarantine, run_started))
    return counts.check(), status, sharded.get("quarantine_reasons") or {}


def quarantine_file(layout: WarehouseLayout) -> Path:
    return layout.quarantine
