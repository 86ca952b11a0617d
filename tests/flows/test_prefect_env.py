"""Prefect's console keeps radsim's expected errors to the CLI's one line; other failures keep their traceback."""
from __future__ import annotations

import logging
import sys

from radsim.data_contracts import UsageError
from radsim.flows.prefect_env import HideRadsimErrors, hide_radsim_error_tracebacks


def _record(name: str, message: str, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = None
    if exc is not None:
        try:
            raise exc
        except BaseException:  # noqa: BLE001 - building exc_info
            exc_info = sys.exc_info()
    return logging.LogRecord(name, logging.ERROR, __file__, 1, message, None, exc_info)


def test_radsim_errors_are_hidden_from_the_console_and_others_are_not():
    keep = HideRadsimErrors().filter
    assert not keep(_record("prefect.task_runs", "Task run failed with exception", UsageError("bad --shards")))
    assert not keep(_record("prefect.flow_runs", "Finished in state Failed('... UsageError: bad --shards')"))

    class SiteSpecificError(UsageError):
        pass

    assert not keep(_record("prefect.flow_runs", "Failed('SiteSpecificError: a subclass is known too')"))
    assert keep(_record("prefect.task_runs", "Task run failed with exception", RuntimeError("a real bug")))
    assert keep(_record("prefect.flow_runs", "Finished in state Failed('RuntimeError: a real bug')"))


def test_the_filter_sits_on_prefects_console_handler_once():
    hide_radsim_error_tracebacks()
    hide_radsim_error_tracebacks()
    consoles = [h for h in logging.getLogger().handlers if type(h).__name__ == "PrefectConsoleHandler"]
    assert consoles
    assert all(sum(isinstance(f, HideRadsimErrors) for f in h.filters) == 1 for h in consoles)
