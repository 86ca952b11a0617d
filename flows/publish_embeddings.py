"""The `publish_embeddings` flow: embed every sharded image → publish atomically → evaluate (DESIGN §1).

It only chains radsim.model.publish and radsim.evaluation.report; the report becomes a
Markdown artifact and the headline numbers a table artifact. Reruns are decided by the
publish record, not Prefect's cache (DESIGN §11), so tasks run with NO_CACHE.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from radsim.flows.prefect_env import configure_prefect

configure_prefect()  # before prefect is imported

from prefect import flow, task
from prefect.cache_policies import NO_CACHE


@task(name="embed-shards", cache_policy=NO_CACHE)
def embed_task(model_dir: str, shards: str, batch_size: int, device: str) -> tuple[Any, Any]:
    from radsim.model.checkpoint import load_model
    from radsim.model.publish import embed_shards

    loaded = load_model(model_dir)
    return loaded, embed_shards(loaded, shards, batch_size=batch_size, device=device)


@task(name="publish-table", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=1)
def publish_task(embedded: Any, loaded: Any, published_dir: str) -> Any:
    from radsim.model.publish import publish_embedded

    return publish_embedded(embedded, loaded, published_dir)


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_task(published_dir: str, report_dir: str, model_version: str, truth: str | None, demo_key: bool,
                  shards: str | None, split: str = "test") -> Any:
    from radsim.data_contracts import keyer_from_env
    from radsim.evaluation.report import run_evaluation

    keyer = keyer_from_env(demo=demo_key) if truth else None
    return run_evaluation(published_dir, report_dir, model_version=model_version, truth=truth, keyer=keyer,
                          shards=shards, split=split)


def _artifacts(evaluation: Any) -> None:
    try:
        from prefect.artifacts import create_markdown_artifact, create_table_artifact
        from prefect.context import FlowRunContext

        if FlowRunContext.get() is None:  # called through .fn: no run to attach them to
            return
        create_markdown_artifact(key="evaluation-report", markdown=evaluation.files["report"].read_text(encoding="utf-8"),
                                 description=f"Evaluation of model version {evaluation.model_version}")
        create_table_artifact(key="evaluation-headline",
                              table=[r.to_dict() for r in evaluation.records if "/" not in r.split and "/" not in r.metric],
                              description="Headline metrics with chance and random values")
    except Exception:  # noqa: BLE001 - an artifact is a nicety; the report is on disk
        pass


@flow(name="publish_embeddings")
def publish_embeddings(model_dir: str, shards: str, published_dir: str, report_dir: str | None = None,
                       truth: str | None = None, demo_key: bool = False, batch_size: int = 256,
                       device: str = "auto", split: str = "test") -> dict[str, Any]:
    """Embed, publish and (with `report_dir`) evaluate; returns the publish summary and headline lines."""
    loaded, embedded = embed_task(str(model_dir), str(shards), batch_size, device)
    published = publish_task(embedded, loaded, str(published_dir))
    out: dict[str, Any] = {"model_version": published.model_version, "rows": published.rows,
                           "path": str(published.path), "summary": published.summary(),
                           "embed_images_per_s": embedded.images_per_s}
    if report_dir is not None:
        evaluation = evaluate_task(str(published_dir), str(report_dir), published.model_version,
                                   None if truth is None else str(truth), demo_key, str(shards), split)
        _artifacts(evaluation)
        out.update(report=str(Path(report_dir) / "report.md"), headline=evaluation.headline(),
                   evaluation=evaluation.summary())
    return out
