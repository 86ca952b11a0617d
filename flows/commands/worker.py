"""`radsim worker`: poll the work pool for the deployments' runs; stop cleanly on SIGTERM or Ctrl-C."""
from __future__ import annotations

import argparse
import os
import sys

from radsim.data_contracts import settings
from radsim.flows.worker_config import WorkerConfig

NAME = "worker"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        NAME,
        help="run the deployments' flow runs (a Prefect process worker that stops cleanly)",
        description="Poll the Prefect work pool (PREFECT_API_URL must name the server) and run the deployments' "
        "flow runs, each in its own process, as `prefect worker start --type process` does. It differs in how it "
        "stops: SIGTERM (systemd, Docker, Kubernetes) or Ctrl-C stops polling, lets the run in flight finish for "
        "--drain-seconds, then cancels it (the run is marked CANCELLED; the next run redoes what it did not "
        "finish); a second signal cancels at once. The worker exits once no flow-run process of it is left. Give "
        "the supervisor a stop timeout longer than --drain-seconds + --cancel-seconds (deploy/README.md).",
    )
    settings.add_arguments(p, WorkerConfig, metavars={"pool": "POOL", "name": "NAME", "limit": "N",
                                                      "drain_seconds": "S", "cancel_seconds": "S"})
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from radsim.data_contracts import UsageError
    from radsim.flows.commands.run import check_prefect_server

    config = settings.from_arguments(WorkerConfig, args)
    if not os.environ.get("PREFECT_API_URL"):
        raise UsageError("radsim worker needs a Prefect server: set PREFECT_API_URL (e.g. "
                         "http://127.0.0.1:4200/api); `radsim run` needs none")
    check_prefect_server()
    # A worker's console shows Prefect's INFO lines (runs submitted, states), and so do its flow-run processes.
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "INFO")
    from radsim.flows.worker import serve

    def say(line: str) -> None:
        print(line, flush=True)

    code = asyncio.run(serve(config, say))
    sys.stdout.flush()
    return code
