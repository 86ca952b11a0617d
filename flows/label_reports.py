"""The `label_reports` flow: label a report file through Prefect (DESIGN §1, §11).

It only wraps `radsim.nlp.runner.label_file`; the counts per finding become a table artifact.
Run on its own: `python -m radsim.flows.label_reports INPUT --out LABELS.parquet`.
"""
from __future__ import annotations

import pickle
import sys
from pathlib import Path
from typing import Any

from radsim.flows.prefect_env import configure_prefect

configure_prefect()

from prefect import flow, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from radsim.flows.artifacts import table_artifact  # noqa: E402
from radsim.flows.streams import closed_pipe_safe  # noqa: E402
from radsim.nlp.config import LabelConfig  # noqa: E402
from radsim.nlp.runner import LabelRunSummary, label_file  # noqa: E402

_LABELERS: dict[bytes, Any] = {}  # per worker process: one labeler per vocabulary, built once


@task(name="label-file", cache_policy=NO_CACHE)
def label_file_task(input: str, out: str, config: LabelConfig, progress: bool) -> LabelRunSummary:
    from radsim.data_contracts.vocabulary import load_vocabulary

    vocabulary = load_vocabulary(config.vocabulary, replace=config.replace_vocabulary)
    return label_file(input, out, config, vocabulary=vocabulary, progress=progress)


@task(name="label-batch", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=1)
def label_batch_task(items: list[tuple[str, object]], inner: int, vocabulary: Any,
                     threshold: str | None = None) -> tuple[Any, list]:
    """Label one exam batch wherever the task runner puts it (a Dask worker, say)."""
    from radsim.nlp.certainty import DEFAULT_THRESHOLD
    from radsim.nlp.labeler import Labeler
    from radsim.nlp.runner import label_chunk

    key = pickle.dumps((vocabulary, threshold))
    if key not in _LABELERS:
        _LABELERS.clear()
        _LABELERS[key] = Labeler(vocabulary, certainty_threshold=threshold or DEFAULT_THRESHOLD)
    return label_chunk(_LABELERS[key], vocabulary, items, inner)


def label_file_mapped(input: str, out: str, config: LabelConfig, progress: bool) -> LabelRunSummary:
    """`label_file` with its exam batches mapped as tasks on the flow's task runner (same bytes out).

    The labels file is still written here, from the batch results in input order.
    """
    from radsim.data_contracts.vocabulary import load_vocabulary

    vocabulary = load_vocabulary(config.vocabulary, replace=config.replace_vocabulary)

    def submit(items: list[tuple[str, object]], inner: int) -> Any:
        return label_batch_task.submit(items, inner, vocabulary, config.certainty_threshold)

    return label_file(input, out, config, vocabulary=vocabulary, progress=progress, submit=submit)


@flow(name="label-reports")
def label_reports(input: str | Path, out: str | Path, config: LabelConfig | None = None, progress: bool = True,
                  mapped: bool = False) -> LabelRunSummary:
    """Label INPUT into OUT (+ OUT.quarantine.parquet) with `config`; publish counts per finding as an artifact.

    `mapped=True` labels exam batches as tasks on the flow's task runner (Dask: see run_label_reports).
    """
    config = config or LabelConfig()
    with closed_pipe_safe():  # a worker gone mid-run must not fail a run whose labels are written
        if mapped:
            summary = label_file_mapped(str(input), str(out), config, progress)
        else:
            summary = label_file_task(str(input), str(out), config, progress)
    c = summary.counts
    table_artifact(
        "label-counts",
        summary.finding_table(),
        f"Labels per finding for {Path(str(input)).name}: {c.rows_in} in = {c.rows_out} labelled + "
        f"{c.quarantined} quarantined + {c.skipped} skipped ({summary.vocabulary}, {summary.labeler_version})",
    )
    return summary


def run_label_reports(input: str | Path, out: str | Path, config: LabelConfig | None = None, *,
                      runner: str = "threads", dask_address: str | None = None, progress: bool = True,
                      **values: Any) -> LabelRunSummary:
    """Run the flow; with `runner="dask"` the exam batches are labelled on a Dask cluster.

    `values` (LabelConfig fields) override `config`; its `workers` also size the task runner.
    """
    from radsim.data_contracts.settings import with_values

    config = with_values(LabelConfig, config, values, "labelling")
    if runner == "dask" or dask_address:
        from radsim.flows.task_runners import make_task_runner

        return label_reports.with_options(task_runner=make_task_runner(runner, config.workers, dask_address))(
            input, out, config, progress=progress, mapped=True)
    if runner not in ("threads", "processes"):
        from radsim.flows.task_runners import make_task_runner

        make_task_runner(runner, config.workers)  # raises the one-line UsageError
    return label_reports(input, out, config, progress=progress)


def main(argv: list[str] | None = None) -> int:
    from radsim.flows.cli import main as cli_main

    return cli_main(["label", *(sys.argv[1:] if argv is None else argv), "--flow"])


if __name__ == "__main__":
    sys.exit(main())
