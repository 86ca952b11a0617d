"""`radsim deploy`: register deploy/prefect.yaml's deployments with the schedules radsim's configuration declares.

The cron strings live in one place, [schedule] in radsim.toml (RADSIM_CRON, RADSIM_TRAIN_CRON,
RADSIM_SCHEDULE_TIMEZONE, or their defaults in flows/run_config.py); prefect.yaml names them
as {{ $RADSIM_CRON }}..., and this command resolves them and runs `prefect deploy` with them.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from radsim.data_contracts import settings

NAME = "deploy"
PREFECT_FILE = "deploy/prefect.yaml"


def register(sub: argparse._SubParsersAction) -> None:
    from radsim.flows.run_config import ScheduleSection

    p = sub.add_parser(
        NAME,
        help="register the Prefect deployments, scheduled by [schedule] in radsim.toml",
        description="Resolve [schedule] (cron for the pipeline deployment, train_cron for the train deployment, "
        "timezone) from the options, RADSIM_* variables, ./radsim.toml (the file the deployments read) and the "
        "defaults, then run `prefect deploy --all` on PREFECT_FILE with them. Run it from the folder the worker "
        "runs the flows from (the repository root): Prefect records it. Needs PREFECT_API_URL.",
    )
    settings.add_arguments(p, ScheduleSection, metavars={"cron": "CRON", "train_cron": "CRON", "timezone": "TZ"})
    p.add_argument("--prefect-file", default=PREFECT_FILE, metavar="PREFECT_FILE",
                   help="the deployments' definitions (default: %(default)s)")
    p.set_defaults(func=run)


def resolved_schedule(args: argparse.Namespace) -> tuple[object, dict[str, str]]:
    """The schedule section and where each of its values came from."""
    from radsim.flows.config import resolve_config

    toml = "radsim.toml" if Path("radsim.toml").is_file() else None
    cfg = resolve_config({f"schedule.{key}": getattr(args, key, None) for key in ("cron", "train_cron", "timezone")},
                         toml)
    return cfg.schedule, {key: cfg.sources.get(f"schedule.{key}", "default") for key in ("cron", "train_cron",
                                                                                          "timezone")}


def run(args: argparse.Namespace) -> int:
    from radsim.data_contracts import RadsimError, UsageError
    from radsim.flows.commands.run import check_prefect_server

    schedule, sources = resolved_schedule(args)
    prefect_file = Path(args.prefect_file)
    if not prefect_file.is_file():
        raise UsageError(f"{prefect_file} not found: run radsim deploy from the repository root, or give "
                         "--prefect-file")
    if not os.environ.get("PREFECT_API_URL"):
        raise UsageError("radsim deploy needs a Prefect server: set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api)")
    check_prefect_server()
    done = subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all", "--prefect-file",
                           str(prefect_file)], env={**os.environ, **schedule.schedule_env()}, capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-6:])
        raise RadsimError(f"prefect deploy failed (exit {done.returncode}): {tail}")
    print(f"deployed {prefect_file} from {Path.cwd()}:")
    print(f"  pipeline/pipeline  cron {schedule.cron!r} ({sources['cron']})")
    print(f"  train/train        cron {schedule.train_cron!r} ({sources['train_cron']})")
    print("  label-reports/label-reports  on demand")
    print(f"  time zone {schedule.timezone} ({sources['timezone']}); start a worker with: radsim worker")
    sys.stdout.flush()
    return 0
