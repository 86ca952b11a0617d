"""radsim's lines reach the flow run's log at INFO whatever Prefect's own level, and print as before."""
from __future__ import annotations

import logging


def test_outside_a_flow_run_a_line_is_only_printed(capsys, monkeypatch):
    from radsim.flows import run_log
    from radsim.flows.run_log import say

    def no_logging():
        raise AssertionError("no flow run: nothing may be sent")

    monkeypatch.setattr(run_log, "_api_logger", no_logging)
    say("[1/6] ingesting /data/inbox", quiet=False)
    say("not shown", quiet=True)
    assert capsys.readouterr().out == "[1/6] ingesting /data/inbox\n"


def test_inside_a_flow_run_the_lines_reach_the_api_even_with_prefect_at_warning(prefect_harness, capsys):
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.context import get_run_context
    from prefect.logging.handlers import APILogHandler

    from radsim.flows.run_log import say

    assert logging.getLogger("prefect").getEffectiveLevel() == logging.WARNING  # tests/conftest.py's setting

    @flow(name="say-something")
    def speaker() -> str:
        say("[1/6] a stage line", quiet=False)
        say("      a quiet detail", quiet=True)
        return str(get_run_context().flow_run.id)

    run_id = speaker()
    APILogHandler().flush()  # the logs are sent in the background: wait for them
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
    messages = [log.message for log in logs if log.name == "prefect.flow_runs.radsim"]
    assert messages == ["[1/6] a stage line", "a quiet detail"]  # quiet hides the console line, not the log
    assert all(log.level == logging.INFO for log in logs if log.name == "prefect.flow_runs.radsim")
    out = capsys.readouterr().out
    assert "[1/6] a stage line" in out and "a quiet detail" not in out
