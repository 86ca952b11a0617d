"""How a worker stops with a pipeline run in flight: `radsim worker` against Prefect 3.9's `prefect worker start`.

One Prefect server on loopback, the deployments registered with `radsim deploy`, and per scenario
a fresh warehouse, a worker, one `pipeline` deployment run, and the worker signalled once the
run has passed its first stage. For each: how the worker ended and when, the run's state on the
server (waited for up to --settle seconds), and whether the run's flow-run process group or the
worker was still alive when the worker had gone. The stock worker's rows are the baseline this
issue started from (issue 23); the flows are radsim's own in both, so the orphan rows show what
`flows/streams.py` changed, not Prefect. A run a scenario leaves RUNNING is ended afterwards (it
would hold the deployment's concurrency slot, limit 1, and the next run would wait for good).

    python -m bench.bench_worker_stop                 # about 5 minutes on 2 cores
    python -m bench.bench_worker_stop --json out.json

Expected: every radsim worker row ends with the worker gone (exit 0), no flow-run process left,
and the run COMPLETED or CANCELLED, never RUNNING; a killed worker's run still COMPLETES.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the real-server helpers the tests use
from radsim_test_fixtures.prefect_server import (  # noqa: E402
    PREFECT,
    RADSIM,
    api,
    flow_run,
    free_port,
    group_gone,
    run_logs,
    server_env,
    start,
    start_server,
    stop_group,
    wait_for,
)

STOCK = [*PREFECT, "worker", "start", "--pool", "radsim-process", "--limit", "1"]
OURS = [*RADSIM, "worker"]
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
# name, worker command, SIGINT ignored at start (a shell's background job), signals as (name, seconds after the last)
SCENARIOS = [
    ("prefect worker start; SIGTERM", STOCK, False, [("SIGTERM", 0)]),
    ("prefect worker start in the background (SIGINT ignored); SIGINT, SIGINT 15 s later", STOCK, True,
     [("SIGINT", 0), ("SIGINT", 15)]),
    ("radsim worker --drain-seconds 0; SIGTERM", [*OURS, "--drain-seconds", "0"], False, [("SIGTERM", 0)]),
    ("radsim worker in the background (SIGINT ignored); SIGINT", OURS, True, [("SIGINT", 0)]),
    ("radsim worker; SIGKILL (a supervisor's last resort)", OURS, False, [("SIGKILL", 0)]),
]


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _toml(work: Path, inbox: Path, name: str) -> Path:
    toml = work / f"{name}.toml"
    toml.write_text(
        f'[paths]\ninbox = "{inbox}"\nwarehouse = "{work / name}"\n[imaging]\nimage_size = 64\n'
        "[model]\nimage_size = 64\nmax_steps = 3\nbatch_size = 8\nforce_promote = true\n[runner]\nworkers = 1\n"
    )
    return toml


def _signal_schedule(worker: subprocess.Popen, schedule: list[tuple[str, float]]) -> float:
    """Send the signals (to the worker's pid); the time of the first."""
    first = None
    for name, delay in schedule:
        time.sleep(delay)
        if worker.poll() is not None:
            break
        os.kill(worker.pid, getattr(signal, name))
        first = first or time.monotonic()
    return first or time.monotonic()


def scenario(base: str, env: dict, work: Path, deployment: dict, inbox: Path, spec: tuple, settle: float) -> dict:
    name, argv, ignore, schedule = spec
    slug = f"s{SCENARIOS.index(spec)}"
    toml = _toml(work, inbox, slug)
    worker = start(argv, env, work / f"{slug}.log", preexec_fn=_ignore_sigint if ignore else None)
    try:
        run_id = api(f"{base}/deployments/{deployment['id']}/create_flow_run",
                     {"parameters": {"config_path": str(toml), "demo_key": True}})["id"]
        wait_for(lambda: any("[2/6]" in m for m in run_logs(base, run_id)), 180, f"{name}: the run's second stage")
        signalled = _signal_schedule(worker, schedule)
        try:
            worker.wait(90)
        except subprocess.TimeoutExpired:
            pass
        exited = None if worker.poll() is None else round(time.monotonic() - signalled, 1)
        pid = int(flow_run(base, run_id).get("infrastructure_pid") or 0)
        orphan = bool(pid) and not group_gone(pid)
        deadline = time.monotonic() + settle
        while flow_run(base, run_id)["state_type"] not in FINAL and time.monotonic() < deadline:
            time.sleep(1)
        run = flow_run(base, run_id)
        ends = time.monotonic() + 30  # a process that has reported its final state still has to exit
        while pid and not group_gone(pid) and time.monotonic() < ends:
            time.sleep(0.5)
        return {"scenario": name, "worker_exit": worker.returncode, "worker_gone_after_s": exited,
                "flow_run_process_left_when_worker_gone": orphan, "run_state": run["state_type"],
                "run_message": (run["state"] or {}).get("message"), "published": (work / slug / "published").exists(),
                "left_30_s_after_the_final_state": bool(pid) and not group_gone(pid)}
    finally:
        stop_group(worker, 5)
        _clean_up(base)


def _clean_up(base: str) -> None:
    """Kill what a scenario left, and end a run it left RUNNING: it would hold the deployment's concurrency
    slot (limit 1) and the next scenario's run would wait for good (it does with the stock worker)."""
    for run in api(f"{base}/flow_runs/filter", {}):
        pid = int(run.get("infrastructure_pid") or 0)
        if pid and not group_gone(pid):
            os.killpg(pid, signal.SIGKILL)
        if run["state_type"] not in (*FINAL, "SCHEDULED"):
            api(f"{base}/flow_runs/{run['id']}/set_state",
                {"state": {"type": "CRASHED", "message": "ended by bench_worker_stop"}, "force": True})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--settle", type=float, default=60, help="seconds to wait for the run's final state")
    ap.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    args = ap.parse_args(argv)
    from radsim.synthetic import generate_cohort

    work = Path(tempfile.mkdtemp(prefix="radsim-bench-worker-"))
    inbox = generate_cohort(work / "cohort", exams=24, seed=21, image_size=64, progress=False).inbox
    port = free_port()
    base = f"http://127.0.0.1:{port}/api"
    env = server_env(work / "prefect-home")
    client = {**env, "PREFECT_API_URL": base, "PREFECT_WORKER_QUERY_SECONDS": "1"}
    server = start_server(port, env, work, work / "server.log")
    rows = []
    try:
        subprocess.run([*PREFECT, "--no-prompt", "work-pool", "create", "radsim-process", "--type", "process"],
                       env=client, cwd=REPO, check=True, capture_output=True)
        subprocess.run([*RADSIM, "deploy"], env=client, cwd=REPO, check=True, capture_output=True)
        deployment = next(d for d in api(f"{base}/deployments/filter", {}) if d["name"] == "pipeline")
        for spec in SCENARIOS:
            rows.append(scenario(base, client, work, deployment, inbox, spec, args.settle))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        stop_group(server)
    print("\n| scenario | worker | gone after | run process left when the worker was gone | run state | published "
          "| run process left 30 s later |")
    print("|---|---|---|---|---|---|---|")
    yes = {True: "yes", False: "no"}
    for r in rows:
        print(f"| {r['scenario']} | exit {r['worker_exit']} | {r['worker_gone_after_s']} s | "
              f"{yes[r['flow_run_process_left_when_worker_gone']]} | {r['run_state']} | {yes[r['published']]} | "
              f"{yes[r['left_30_s_after_the_final_state']]} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
