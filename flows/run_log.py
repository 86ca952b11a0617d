"""radsim's own lines on the flow run's log: what a person reads in the Prefect UI (DESIGN §11).

The console shows radsim's lines as plain prints (`say`); the same line also goes to the run
log at INFO through a logger of its own that sends to the Prefect API only. Its level is set
here, so PREFECT_LOGGING_LEVEL (Prefect's own chatter) never hides radsim's lines from a server,
and it does not propagate to Prefect's console handler, so nothing is shown twice. Outside a
flow run (a flow called through `.fn`, a plain function in a test) only the print happens.

What goes on this log is what the console shows: stage lines, counts, reasons and decisions,
never a raw id, a path under restricted/, a header value or report text (DESIGN §3).
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

from radsim.flows.prefect_env import configure_prefect

configure_prefect()  # before prefect is imported

from prefect.context import FlowRunContext  # noqa: E402

LOGGER_NAME = "prefect.flow_runs.radsim"


def _api_logger() -> logging.Logger:
    """INFO and above to the Prefect API only, whatever PREFECT_LOGGING_LEVEL says."""
    from prefect.logging.handlers import APILogHandler

    logger = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(h, APILogHandler) for h in logger.handlers):
        logger.addHandler(APILogHandler())
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def in_deployment_run() -> bool:
    """True inside a flow run a worker started from a deployment (no `radsim` command prints its summary)."""
    ctx = FlowRunContext.get()
    return ctx is not None and ctx.flow_run is not None and ctx.flow_run.deployment_id is not None


def log_lines(lines: Iterable[str], level: int = logging.INFO) -> None:
    """Each line on the current flow run's log (nothing outside a flow run)."""
    if FlowRunContext.get() is None:
        return
    logger = _api_logger()
    for line in lines:
        logger.log(level, line)


def say(line: str, quiet: bool = False, level: int = logging.INFO) -> None:
    """Print `line` (unless `quiet`) and put it on the flow run's log (always)."""
    if not quiet:
        print(line, file=sys.stderr if level >= logging.WARNING else sys.stdout, flush=True)
    log_lines([line.strip()], level)


def warn(line: str) -> None:
    """A warning: on the console (stderr) and on the flow run's log at WARNING."""
    say(line, quiet=False, level=logging.WARNING)
