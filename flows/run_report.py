"""What a person reads about one pipeline or train run, on the console and in the Prefect UI.

`summary_lines` are the end-of-run lines (`radsim run` prints them; a deployment run prints them
on the worker's console); `report_run` puts them on the flow run's log, writes the run's one
markdown artifact (the reconciliation per stage, this run's quarantine reasons, the model
decision with its metrics) under a key that is the same for every run of a flow, so the UI shows
its history, and tags the run with the warehouse's name and the model version. Counts, reasons
and decisions only: nothing here names an exam, a patient or a path under restricted/.
"""
from __future__ import annotations

from typing import Any

ARTIFACT_KEYS = {"pipeline": "radsim-pipeline-run", "train": "radsim-train-run"}


def summary_lines(result: Any, heading: str) -> list[str]:
    """The heading, each stage's `in = out + quarantined + skipped`, the notes, the test headline, the publication."""
    lines = [heading, *(f"  {c.summary()}" for c in result.counts), *(f"  {n}" for n in result.notes)]
    if not result.counts:
        lines.insert(1, f"  {no_stage_sentence()}")
    if result.headline:
        lines += ["Test split, against the validated subset:", *(f"  {h}" for h in result.headline)]
    if result.deferred and result.model_version is None:
        lines.append("  nothing published yet: training is deferred until enough labelled exams have arrived")
    elif not result.nothing_new and result.model_version is not None:
        lines.append(f"  published {result.published_rows} rows under model version {result.model_version}")
    return lines


def no_stage_sentence() -> str:
    return ("no ingest, label or shard stage ran in this run (a retrain works on the shards already in the "
            "warehouse), so there is nothing to reconcile")


def warehouse_name(warehouse: str) -> str:
    """The warehouse folder's own name (the last part of a path or URI): a tag, never a path."""
    return str(warehouse).rstrip("/").rsplit("/", 1)[-1] or str(warehouse)


def run_markdown(result: Any, flow_name: str, warehouse: str) -> str:
    """The run's artifact: reconciliation, quarantine reasons, model decision."""
    lines = [f"# radsim {flow_name} run: warehouse {warehouse_name(warehouse)}", "",
             f"Finished in {result.seconds:.0f} s.", "", "## Reconciliation", ""]
    if result.counts:
        lines += ["rows in = out + quarantined + skipped (already processed), per stage:", "",
                  "| stage | in | out | quarantined | skipped | reconciles |", "|---|---|---|---|---|---|"]
        lines += [f"| {c.stage} | {c.rows_in} | {c.rows_out} | {c.quarantined} | {c.skipped} | "
                  f"{'yes' if c.balanced else '**no**'} |" for c in result.counts]
    else:
        lines.append(no_stage_sentence()[0].upper() + no_stage_sentence()[1:] + ".")
    lines += ["", "## Quarantine reasons (this run)", "", *_reason_lines(result.run_reasons), "",
              "## Model", "", *_model_lines(result), "", "## Notes", "", *(f"- {n}" for n in result.notes)]
    return "\n".join(lines)


def _reason_lines(reasons: dict[str, dict[str, int]]) -> list[str]:
    shown = [f"- {stage}: " + ", ".join(f"{code}={n}" for code, n in sorted(counts.items()))
             for stage, counts in reasons.items() if counts]
    return shown or ["Nothing was quarantined in this run."]


def _model_lines(result: Any) -> list[str]:
    from radsim.evaluation.display import decision_text, model_card_markdown

    if result.promotion:
        card = model_card_markdown(result.promotion.get("candidate") or "candidate",
                                   result.metrics.get("validation") or {}, result.metrics.get("baselines") or {},
                                   result.promotion)
        return [f"**Decision: {decision_text(result.promotion)}**", "",
                *(line.replace("# ", "### ", 1) if line.startswith("# ") else line for line in card.splitlines())]
    if result.deferred:
        return [f"No model trained: {result.deferred}"]
    if result.model_version:
        return [f"No model trained in this run: the current model {result.model_version} was kept (no gate decision "
                "was needed)."]
    return ["No model trained and none is current yet."]


def report_run(result: Any, flow_name: str, warehouse: str, quiet: bool) -> None:
    """Summary lines on the run log (and the worker's console), the run's artifact and tags; only in a flow run."""
    from radsim.flows.artifacts import in_flow_run, markdown_artifact
    from radsim.flows.run_log import in_deployment_run, log_lines

    if not in_flow_run():
        return
    lines = summary_lines(result, f"radsim {flow_name} finished in {result.seconds:.0f} s. Counts (rows in = out + "
                                  "quarantined + skipped as already processed):")
    if in_deployment_run() and not quiet:
        print("\n".join(lines), flush=True)  # no `radsim` command is there to print them
    log_lines(lines)
    markdown_artifact(ARTIFACT_KEYS.get(flow_name, f"radsim-{flow_name}-run"),
                      run_markdown(result, flow_name, warehouse),
                      f"radsim {flow_name} run: reconciliation, quarantine reasons and the model decision")
    tag_run(f"warehouse:{warehouse_name(warehouse)}",
            *([f"model:{result.model_version}"] if result.model_version else []))


def tag_run(*tags: str) -> None:
    """Add `tags` to the current flow run (kept with the ones it has); an API error is a warning on the log."""
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    from radsim.flows.run_log import warn

    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return
    try:
        with get_client(sync_client=True) as client:
            current = client.read_flow_run(ctx.flow_run.id).tags or []
            client.update_flow_run(ctx.flow_run.id, tags=sorted({*current, *tags}))
    except Exception as exc:  # noqa: BLE001 - the run's outputs are on disk; tags are for the UI
        warn(f"radsim: could not tag the flow run: {exc}")
