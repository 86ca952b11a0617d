"""Task runners for the CPU stages: local threads or processes, or a Dask cluster (DESIGN §11).

Dask goes through prefect-dask. With Prefect's ephemeral API each Dask worker would start its own
server, so point PREFECT_API_URL at a real server when using `dask`.
"""
from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urlsplit

from radsim.data_contracts import UsageError
from radsim.flows.run_config import TASK_RUNNERS
from radsim.model.embed_config import DEFAULT_WORKERS

RUNNERS = TASK_RUNNERS  # declared with the [runner] section (radsim.flows.run_config)
CONNECT_TIMEOUT_S = 5.0


def add_runner_arguments(parser: Any, work: str) -> None:
    """`--task-runner` and `--dask-address` for a CLI stage; `work` names what is mapped (e.g. "decode batches")."""
    parser.add_argument("--task-runner", choices=RUNNERS,
                        help=f"run as a Prefect flow with the {work} as tasks on this task runner; dask uses "
                        "--dask-address, else a local cluster of --workers processes. Dask needs PREFECT_API_URL "
                        "pointing at a Prefect server")
    parser.add_argument("--dask-address", metavar="tcp://HOST:PORT",
                        help=f"Dask scheduler to send the {work} to (implies --task-runner dask)")


def runner_from_args(args: Any) -> str | None:
    """The task runner the CLI options ask for (None: run the plain functions), or a UsageError."""
    runner = args.task_runner or ("dask" if args.dask_address else None)
    if args.dask_address and runner != "dask":
        raise UsageError(f"--dask-address needs --task-runner dask (got {runner})")
    return runner


def check_dask_scheduler(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast, in one line, when the scheduler cannot be reached (instead of a traceback later)."""
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if parts.scheme not in ("tcp", "tls") or not host or not port:
        raise UsageError(f"--dask-address {address!r} is not a scheduler address like tcp://HOST:8786")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise UsageError(f"Dask scheduler {address} is unreachable ({exc.strerror or exc}); check that "
                         f"`dask scheduler` is running there and that port {port} is open from this machine") from None


def make_task_runner(kind: str = "threads", workers: int = DEFAULT_WORKERS, dask_address: str | None = None) -> Any:
    """Threads (cheap to start), processes (true parallelism) or Dask (a cluster, or a LocalCluster)."""
    if kind not in RUNNERS:
        raise UsageError(f"task runner must be one of {RUNNERS}, got {kind!r}")
    if dask_address and kind != "dask":
        raise UsageError(f"--dask-address needs --task-runner dask (got {kind!r})")
    if kind == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=max(1, workers))
    if kind == "processes":
        from prefect.task_runners import ProcessPoolTaskRunner

        return ProcessPoolTaskRunner(max_workers=max(1, workers))
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        raise UsageError("--task-runner dask needs the prefect-dask and distributed packages installed") from None
    if dask_address:
        check_dask_scheduler(dask_address)
        return DaskTaskRunner(address=dask_address)
    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs={"n_workers": max(1, workers), "processes": True, "threads_per_worker": 1,
                                          "dashboard_address": None})
