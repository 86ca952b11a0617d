"""Prefect artifacts, written from inside a flow run only, never at the cost of the run.

An artifact is what a person reads in the Prefect UI; the run's real outputs are on disk. So
outside a flow run (a flow called through `.fn`, a test) nothing is written, and an API error
while writing one is a warning on the run's log, never a failed run.
"""
from __future__ import annotations

from typing import Any

from radsim.flows.prefect_env import configure_prefect

configure_prefect()  # before prefect is imported

from prefect.context import FlowRunContext  # noqa: E402

from radsim.flows.run_log import warn  # noqa: E402


def in_flow_run() -> bool:
    return FlowRunContext.get() is not None


def markdown_artifact(key: str, markdown: str, description: str) -> None:
    _create("markdown", key=key, markdown=markdown, description=description)


def table_artifact(key: str, table: list[dict[str, Any]], description: str) -> None:
    """A table; an empty one is a sentence saying there was nothing to count (never an empty table in the UI)."""
    if not table:
        markdown_artifact(key, f"Nothing to show: no rows this run. ({description})", description)
        return
    _create("table", key=key, table=table, description=description)


def _create(kind: str, **fields: Any) -> None:
    if not in_flow_run():
        return
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    create = create_markdown_artifact if kind == "markdown" else create_table_artifact
    try:
        create(**fields)
    except Exception as exc:  # noqa: BLE001 - the outputs are on disk; the run goes on, and says so
        warn(f"radsim: could not write the Prefect artifact {fields['key']!r}: {exc}")
