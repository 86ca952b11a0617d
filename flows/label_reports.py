"""The `label_reports` flow: label a report file through Prefect (DESIGN §1, §11).

It only wraps `radsim.nlp.runner.label_file`; the counts per finding become a table artifact.
Run on its own: `python -m radsim.flows.label_reports INPUT --out LABELS.parquet`.
"""
from __future__ import annotations

import sys
from pathlib import Path

from radsim.flows.prefect_env import configure_prefect

configure_prefect()

from prefect import flow, task  # noqa: E402
from prefect.artifacts import create_table_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from radsim.nlp.runner import LabelRunSummary, label_file  # noqa: E402


@task(name="label-file", cache_policy=NO_CACHE)
def label_file_task(input: str, out: str, vocabulary_path: str | None, replace_vocabulary: bool, workers: int,
                    batch_size: int, progress: bool) -> LabelRunSummary:
    from radsim.data_contracts.vocabulary import load_vocabulary

    vocabulary = load_vocabulary(vocabulary_path, replace=replace_vocabulary)
    return label_file(input, out, vocabulary=vocabulary, workers=workers, batch_size=batch_size, progress=progress)


@flow(name="label-reports")
def label_reports(input: str | Path, out: str | Path, vocabulary_path: str | None = None,
                  replace_vocabulary: bool = False, workers: int = 1, batch_size: int = 512,
                  progress: bool = True) -> LabelRunSummary:
    """Label INPUT into OUT (+ OUT.quarantine.parquet); publish counts per finding as an artifact."""
    summary = label_file_task(str(input), str(out), None if vocabulary_path is None else str(vocabulary_path),
                              replace_vocabulary, workers, batch_size, progress)
    c = summary.counts
    create_table_artifact(
        key="label-counts",
        table=summary.finding_table(),
        description=f"Labels per finding for {Path(str(input)).name}: {c.rows_in} in = {c.rows_out} labelled + "
        f"{c.quarantined} quarantined + {c.skipped} skipped ({summary.vocabulary}, {summary.labeler_version})",
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    from radsim.flows.cli import main as cli_main

    return cli_main(["label", *(sys.argv[1:] if argv is None else argv), "--flow"])


if __name__ == "__main__":
    sys.exit(main())
