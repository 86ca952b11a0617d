"""The pipeline's model steps: (re)train and promote, embed with the current model, publish, evaluate.

Shared by the `pipeline` and `train` flows (flows/pipeline.py). Each step is the ordered list of
its tasks; the decisions live in radsim.warehouse (gates, registry, ledger) and radsim.model.
"""
from __future__ import annotations

import time
from typing import Any

from radsim.flows.prefect_env import configure_prefect

configure_prefect()  # before prefect is imported

from prefect.utilities.annotations import quote  # big arguments: Prefect must not walk every row

from radsim.flows.pipeline_tasks import promote_task, relabel_task
from radsim.flows.run_config import RunConfig
from radsim.flows.run_context import RunContext
from radsim.flows.run_log import say
from radsim.warehouse.layout import REPORT_FILE, WarehouseLayout


def train_publish_evaluate(run: RunContext, ledger: Any, train: bool) -> set[str]:
    """(Re)train and promote when asked, then embed the shards with the current model, publish, evaluate.

    Without a retrain, shards whose rows the current version already published are reused
    (radsim.model.reuse.plan_reuse); the published table is the same as a full re-embed's.
    Returns the published exam keys.
    """
    from radsim.warehouse.registry import current_model

    layout, result, quiet = run.layout, run.result, run.quiet
    current = current_model(layout.models)
    if train or current is None:
        current, train = train_step(run, current)
        if current is None:
            return set()
    if not train:
        say(f"[4/6] keeping the current model {current['model_version']} (no retrain asked)", quiet)
    version = current["model_version"]
    result.model_version = version
    result.outputs["model"] = layout.models / version
    embedded = publish_step(run, current, train, ledger)
    evaluate_step(run, version)
    return set(embedded.exam_keys)


def train_step(run: RunContext, current: dict | None) -> tuple[dict | None, bool]:
    """Train a candidate and put it through the gates when there is data enough: (current model, trained?)."""
    from radsim.flows.train_embedding import train_embedding
    from radsim.model.config import train_config
    from radsim.warehouse.registry import current_model

    layout, cfg, result, quiet = run.layout, run.cfg, run.result, run.quiet

    readiness = _readiness(layout, cfg)
    if not readiness.ready:
        result.deferred = readiness.message
        result.notes.append(readiness.message)
        say(f"[4/6] {readiness.message}", quiet)
        if current is None:
            say("[5/6] nothing to embed or publish until a first model is trained", quiet)
            say("[6/6] evaluation skipped (no model yet)", quiet)
        return current, False  # a retrain asked for on too little data: the current model stays
    say("[4/6] training the embedding network (train_embedding flow)", quiet)
    options = cfg.training_options()
    if readiness.batch_size != readiness.requested:
        options["batch_size"] = readiness.batch_size
        result.notes.append(readiness.message)
        say(f"      {readiness.message}", quiet)
    trained = train_embedding(layout.shards, layout.models / f"training-{time.strftime('%Y%m%d%H%M%S')}",
                              train_config(**options), launch=cfg.launch_options(), progress=run.progress)
    result.promotion = promote_task(str(layout.models), trained["model_dir"],
                                    cfg.model.min_val_patients, cfg.force_source())
    result.notes += [line.strip() for line in trained["summary"].splitlines() if "model folder" not in line]
    result.notes.append(f"model {result.promotion['candidate']}: {result.promotion['reason']}")
    result.metrics["validation"] = trained.get("metrics") or {}
    result.metrics["untrained_encoder"] = (trained.get("baseline_metrics") or {}).get("untrained_encoder") or {}
    result.metrics["baselines"] = trained.get("baseline_metrics") or {}
    current = current_model(layout.models)
    if current is None:
        say(f"      {result.promotion['reason']}", quiet)
        say("[5/6] nothing published: no model has passed the gates yet (--force-promote to publish anyway)", quiet)
        say("[6/6] evaluation skipped (no model published yet)", quiet)
    return current, True


def publish_step(run: RunContext, current: dict, trained: bool, ledger: Any) -> Any:
    """Embed every sharded image with the current model (reusing what it published) and publish it as current."""
    from radsim.flows.publish_embeddings import prune_task, publish_task, reuse_plan_task

    layout, cfg, result, quiet = run.layout, run.cfg, run.result, run.quiet

    version = current["model_version"]
    model_dir = layout.models / version
    # Shards are append-only and a version's weights never change: rows this version already
    # published are reused and only new shards embedded. A retrain embeds everything.
    plan = None if trained else reuse_plan_task(str(model_dir), str(layout.shards), str(layout.published))
    if plan is not None and plan.reused_shards:
        say(f"[5/6] embedding {len(plan.embed)} new shards with {version} (reusing {plan.reused_shards} "
            f"published) and publishing", quiet)
    else:
        why = f" ({plan.note})" if plan is not None else " (a training run: nothing reused)"
        say(f"[5/6] embedding every sharded image with {version}{why} and publishing", quiet)
    loaded, embedded = _embed(layout, cfg, str(model_dir), plan, run.progress)
    _record_embedding(result, embedded, version, plan)
    embedded = relabel_task(quote(embedded), str(layout.labels), ledger)
    published = publish_task(quote(embedded), loaded, str(layout.published), True,
                             f"the current model ({current.get('reason') or 'promoted'})")
    result.published_rows = published.rows
    result.outputs["published embeddings"] = layout.published / "embeddings"
    keep = cfg.publish.keep_versions
    if keep:
        result.notes.append(prune_task(str(layout.published), keep, str(layout.index)).summary())
    return embedded


def _embed(layout: WarehouseLayout, cfg: RunConfig, model_dir: str, plan: Any, progress: bool) -> tuple[Any, Any]:
    """(loaded model, EmbeddedShards) on the configured runner; one task when it is "threads"."""
    from radsim.flows.publish_embeddings import embed_task, run_embed_shards

    embed = cfg.embed_config()
    if cfg.mapped:  # groups of shards as tasks on the runner, CPU fp32 like a local run
        return run_embed_shards(model_dir, str(layout.shards), embed, runner=cfg.runner.task_runner,
                                dask_address=cfg.runner.dask_address, progress=progress, reuse=plan)
    # one task: torch already uses every core of this process, so threads would only add overhead
    return embed_task(model_dir, str(layout.shards), embed.batch_size, embed.device_for(mapped=False), quote(plan))


def _record_embedding(result: Any, embedded: Any, version: str, plan: Any) -> None:
    shards_total = len(embedded.shard_digests)
    new_shards, new_rows = shards_total - embedded.reused_shards, embedded.rows - embedded.reused_rows
    result.metrics["embedding"] = {"shards_embedded": new_shards, "shards_reused": embedded.reused_shards,
                                   "rows_embedded": new_rows, "rows_reused": embedded.reused_rows}
    result.notes.append(f"embedding: {new_shards} shards embedded ({new_rows} images), {embedded.reused_shards} "
                        f"reused from published {version} ({embedded.reused_rows} rows)"
                        + ("" if embedded.reused_shards else
                           f"; {plan.note if plan is not None else 'a training run: nothing reused'}"))


def evaluate_step(run: RunContext, version: str) -> None:
    """Evaluate the published version against the validated subset, when one is configured."""
    from radsim.flows.publish_embeddings import evaluate_task, evaluation_artifacts

    layout, cfg, result, quiet = run.layout, run.cfg, run.result, run.quiet

    truth = cfg.paths.truth
    if not truth:
        say("[6/6] no validated subset configured (paths.truth): evaluation skipped", quiet)
        return
    say("[6/6] evaluating against the validated subset", quiet)
    report_dir = layout.reports / version
    evaluation = evaluate_task(str(layout.published), str(report_dir), version, str(truth), run.demo_key,
                               str(layout.shards), reuse=True)  # a report of unchanged inputs is kept
    if evaluation.reused:
        say(f"      {evaluation.notes[0]}", quiet)
    else:
        evaluation_artifacts(evaluation)
    result.headline = list(evaluation.headline())
    result.outputs["evaluation report"] = report_dir / REPORT_FILE


def _readiness(layout: WarehouseLayout, cfg: RunConfig) -> Any:
    """Enough labelled data for a first model (or a retrain)? radsim.model.readiness decides."""
    from radsim.model.readiness import training_readiness

    return training_readiness(layout.shards, cfg.train_config().batch_size)
