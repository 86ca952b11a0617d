"""The `publish_embeddings` flow: embed every sharded image → publish atomically → evaluate (DESIGN §1).

It only chains radsim.model.publish and radsim.evaluation.report; the report becomes a
Markdown artifact and the headline numbers a table artifact. Reruns are decided by the
publish record, not Prefect's cache (DESIGN §11), so tasks run with NO_CACHE.

Scale-out (DESIGN §11): `mapped=True` (or `run_publish_embeddings(runner=...)`) embeds groups of
`shards_per_task` shards as `embed-part` tasks on the flow's task runner (threads, processes or
Dask) and assembles them here in manifest order; the published table is the same as a
one-process run's. Each worker loads the model itself, so every Dask worker must see MODEL_DIR
and SHARDS_DIR at the same path as the flow process (a shared volume).
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from radsim.flows.prefect_env import configure_prefect

configure_prefect()  # before prefect is imported

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote

from radsim.data_contracts.settings import with_values
from radsim.evaluation.config import EvalConfig  # noqa: E402
from radsim.model.embed_config import EmbedConfig
from radsim.warehouse.layout import REPORT_FILE  # noqa: E402

DEFAULT_SPLIT = EvalConfig.model_fields["split"].default


@task(name="embed-shards", cache_policy=NO_CACHE)
def embed_task(model_dir: str, shards: str, batch_size: int, device: str, reuse: Any = None) -> tuple[Any, Any]:
    """(loaded model, EmbeddedShards); with `reuse` (a ReusePlan) only the plan's shards are embedded."""
    from radsim.model.checkpoint import load_model
    from radsim.model.publish import embed_shards

    loaded = load_model(model_dir)
    return loaded, embed_shards(loaded, shards, batch_size=batch_size, device=device, reuse=reuse)


@task(name="plan-reuse", cache_policy=NO_CACHE)
def reuse_plan_task(model_dir: str, shards: str, published_dir: str) -> Any:
    """Which shards the current version already published (radsim.model.publish.plan_reuse)."""
    from radsim.model.publish import plan_reuse

    return plan_reuse(published_dir, shards, model_dir)


_MODELS: dict[tuple[str, int, int], Any] = {}  # per worker process: the last model loaded, by file identity
_MODELS_LOCK = threading.Lock()  # the threads runner calls the task from several threads at once


def cached_model(model_dir: str) -> Any:
    """The model in `model_dir`, on CPU, loaded once per process (again when model.pt changes)."""
    from radsim.model.checkpoint import BEST_FILE, load_model

    path = Path(model_dir)
    path = path / BEST_FILE if path.is_dir() else path
    try:
        st = path.stat()
    except OSError:
        from radsim.data_contracts import UsageError

        raise UsageError(f"no model at {path} on this worker: workers need MODEL_DIR at the same path") from None
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS.clear()
            _MODELS[key] = load_model(path, device="cpu")
        return _MODELS[key]


@task(name="embed-part", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=1)
def embed_part_task(model_dir: str, shards: str, names: list[str], batch_size: int, device: str) -> Any:
    """Embed one group of shards wherever the task runner puts it (a Dask worker, say)."""
    from radsim.model.publish import embed_part

    return embed_part(cached_model(model_dir), shards, names, batch_size=batch_size, device=device)


def embed_mapped(model_dir: str, shards: str, config: EmbedConfig, progress: bool = False,
                 only: list[str] | None = None) -> tuple[Any, Any]:
    """`embed_shards` with its shard groups mapped as tasks on the current flow's task runner.

    Returns (loaded model, EmbeddedShards) like `embed_task`; at most 2 × workers groups are in flight.
    `only` embeds just those shards (a ReusePlan's `embed`). Tasks embed on CPU unless the config
    names a device, so every worker computes in fp32 like a local CPU run.
    """
    from radsim.model.checkpoint import load_model
    from radsim.model.publish import embed_shards

    loaded = load_model(model_dir)
    device = config.device_for(mapped=True)

    def submit(names: list[str]) -> Any:
        return embed_part_task.submit(model_dir, shards, names, config.batch_size, device)

    return loaded, embed_shards(loaded, shards, batch_size=config.batch_size, device=device, progress=progress,
                                shards_per_task=config.shards_per_task, submit=submit,
                                window=2 * config.workers, only=only)


@flow(name="embed-shards")
def embed_shards_flow(model_dir: str, shards: str, config: EmbedConfig | None = None, progress: bool = False,
                      only: list[str] | None = None) -> tuple[Any, Any]:
    """Embed every sharded image (or the `only` shards), groups of shards as tasks on this flow's task runner."""
    return embed_mapped(str(model_dir), str(shards), config or EmbedConfig(), progress=progress, only=only)


def run_embed_shards(model_dir: str, shards: str, config: EmbedConfig | None = None, *, runner: str = "threads",
                     dask_address: str | None = None, reuse: Any = None, progress: bool = False,
                     **values: Any) -> tuple[Any, Any]:
    """(loaded model, EmbeddedShards) with the shard groups on the chosen task runner (threads, processes, dask).

    `values` (EmbedConfig fields) override `config`. With `reuse` (a ReusePlan) only the plan's
    shards go to the runner, and the reused rows are merged in here: the plan holds vectors, so
    it never becomes a flow parameter.
    """
    from radsim.flows.task_runners import make_task_runner
    from radsim.model.reuse import embed_reusing

    config = with_values(EmbedConfig, config, values, "embedding")
    embed_flow = embed_shards_flow.with_options(task_runner=make_task_runner(runner, config.workers, dask_address))
    return embed_reusing(reuse, shards, lambda only: embed_flow(str(model_dir), str(shards), config,
                                                                progress=progress, only=only))


@task(name="publish-table", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=1)
def publish_task(embedded: Any, loaded: Any, published_dir: str, make_current: bool = False,
                 reason: str | None = None, promotion: dict[str, Any] | None = None) -> Any:
    from radsim.model.publish import publish_embedded

    return publish_embedded(embedded, loaded, published_dir, make_current=make_current, current_reason=reason,
                            promotion=promotion)


@task(name="publication-gates", cache_policy=NO_CACHE)
def gate_task(model_dir: str, published_dir: str, make_current: bool, force: str | None) -> Any:
    from radsim.model.publish import current_choice

    return current_choice(model_dir, published_dir, make_current, force)


@task(name="prune-published", cache_policy=NO_CACHE)
def prune_task(published_dir: str, keep: int, index_dir: str | None = None) -> Any:
    from radsim.warehouse.published import prune_versions

    return prune_versions(published_dir, keep, index_dir=index_dir)


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_task(published_dir: str, report_dir: str, model_version: str, truth: str | None, demo_key: bool,
                  shards: str | None, split: str = DEFAULT_SPLIT, reuse: bool = False) -> Any:
    from radsim.data_contracts import keyer_from_env
    from radsim.evaluation.report import EvalInputs, run_evaluation

    keyer = keyer_from_env(demo=demo_key) if truth else None
    return run_evaluation(published_dir, report_dir, inputs=EvalInputs(model_version, truth, keyer, shards),
                          split=split, reuse=reuse)


def evaluation_artifacts(evaluation: Any) -> None:
    from radsim.flows.artifacts import markdown_artifact, table_artifact

    markdown_artifact("evaluation-report", evaluation.files["report"].read_text(encoding="utf-8"),
                      f"Evaluation of model version {evaluation.model_version}")
    table_artifact("evaluation-headline",
                   [r.to_dict() for r in evaluation.records if "/" not in r.split and "/" not in r.metric],
                   "Headline metrics: value, 95% interval, verdict, chance (true null) and random embeddings")


@flow(name="publish_embeddings")
def publish_embeddings(model_dir: str, shards: str, published_dir: str, config: EmbedConfig | None = None,
                       report_dir: str | None = None, truth: str | None = None, demo_key: bool = False,
                       split: str = DEFAULT_SPLIT, mapped: bool = False, progress: bool = False,
                       force: str | None = None) -> dict[str, Any]:
    """The gates' decision, then embed, publish and, with `report_dir`, evaluate.

    The version becomes current when `config.current` and the gates promoted the model, or with
    `force` (where a force came from: "--force-promote"), recorded as forced.

    Returns the publish summary and headline lines.

    `mapped=True` embeds groups of `config.shards_per_task` shards as tasks on the flow's task runner.

    Wide on purpose: a Prefect flow's parameters are what a deployment sets and the UI shows; the embedding
    settings travel as one EmbedConfig.
    """
    config = config or EmbedConfig()
    choice = gate_task(str(model_dir), str(published_dir), config.current, force)
    if mapped:
        loaded, embedded = embed_mapped(str(model_dir), str(shards), config, progress=progress)
    else:
        loaded, embedded = embed_task(str(model_dir), str(shards), config.batch_size, config.device_for(mapped=False))
    published = publish_task(quote(embedded), loaded, str(published_dir), choice.current,  # quote: Prefect must
                             choice.reason, choice.decision)  # not walk every row
    out: dict[str, Any] = {"model_version": published.model_version, "rows": published.rows,
                           "path": str(published.path), "summary": published.summary() + "\n" + choice.summary(),
                           "record_path": str(published.record_path), "current": choice.current,
                           "embed_images_per_s": embedded.images_per_s}
    if report_dir is not None:
        evaluation = evaluate_task(str(published_dir), str(report_dir), published.model_version,
                                   None if truth is None else str(truth), demo_key, str(shards), split)
        evaluation_artifacts(evaluation)
        out.update(report=str(Path(report_dir) / REPORT_FILE), headline=evaluation.headline(),
                   evaluation=evaluation.summary())
    return out


def run_publish_embeddings(model_dir: str, shards: str, published_dir: str, config: EmbedConfig | None = None, *,
                           runner: str = "threads", dask_address: str | None = None, progress: bool = False,
                           force: str | None = None, **values: Any) -> dict[str, Any]:
    """Run the flow with the shard groups embedded on the chosen task runner (threads, processes or dask).

    `values` (EmbedConfig fields) override `config`. Only the embedding leaves this process; the
    publication (and evaluation) stay here.
    """
    from radsim.flows.task_runners import make_task_runner

    config = with_values(EmbedConfig, config, values, "embedding")
    return publish_embeddings.with_options(task_runner=make_task_runner(runner, config.workers, dask_address))(
        str(model_dir), str(shards), str(published_dir), config, mapped=True, progress=progress, force=force)
