"""Offline defaults for Prefect, applied before prefect is first imported (DESIGN §11, §13).

Prefect runs in its ephemeral local mode unless the user points PREFECT_API_URL at a server.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

OFFLINE_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    # Prefect's INFO records (task and flow run states) reach the run log a server keeps; the
    # console handler shows WARNING and above only, so the terminal carries radsim's own lines.
    # radsim's lines reach the run log whatever these say (radsim.flows.run_log).
    "PREFECT_LOGGING_LEVEL": "INFO",
    "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
}


def configure_prefect(home: str | Path | None = None) -> None:
    """Set the offline defaults (without overriding what the user set) and a PREFECT_HOME.

    An empty PREFECT_API_URL is not the same as an unset one: it is removed.
    """
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)
    if os.environ.get("PREFECT_API_URL", None) == "":
        del os.environ["PREFECT_API_URL"]
    if "PREFECT_HOME" not in os.environ:
        base = Path(home) if home else Path(tempfile.gettempdir()) / f"radsim-prefect-{os.getuid()}"
        base.mkdir(parents=True, exist_ok=True)
        os.environ["PREFECT_HOME"] = str(base)
    hide_radsim_error_tracebacks()


class HideRadsimErrors(logging.Filter):
    """Keep Prefect's console free of tracebacks for radsim's own errors (the Prefect API still gets them).

    A RadsimError is an expected, explained failure: `radsim` prints it as one line (DESIGN §4).
    Prefect would log it three more times with tracebacks (task run, task state, flow run).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        from radsim.data_contracts.errors import RadsimError

        if record.exc_info and isinstance(record.exc_info[1], RadsimError):
            return False
        if record.levelno >= logging.ERROR and record.name.startswith(("prefect.task_runs", "prefect.flow_runs")):
            message = record.getMessage()
            return not any(f"{name}(" in message or f"{name}:" in message for name in _error_names(RadsimError))
        return True


def _error_names(base: type) -> set[str]:
    """`base` and every subclass imported so far (UsageError, NonFiniteLossError, …)."""
    names, todo = set(), [base]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return names


def hide_radsim_error_tracebacks() -> None:
    """Attach HideRadsimErrors to Prefect's console handler (created when `prefect.flow` is imported)."""
    from prefect import flow  # noqa: F401 - importing it sets up Prefect's logging handlers

    for handler in logging.getLogger().handlers:
        if type(handler).__name__ == "PrefectConsoleHandler" and not any(
                isinstance(f, HideRadsimErrors) for f in handler.filters):
            handler.addFilter(HideRadsimErrors())
