"""Acceptance: the deployments on a real Prefect server, a process work pool and `radsim worker`, stopped cleanly.

Starts `prefect server start` on 127.0.0.1 (own PREFECT_HOME, free port), creates the work pool,
registers deploy/prefect.yaml with `radsim deploy` (the schedule comes from RADSIM_CRON), then:

1. a worker with --drain-seconds 0 takes a pipeline run; SIGTERM to the worker (what systemd with
   KillMode=mixed, Docker and Kubernetes send) mid-run: the worker exits 0, the run is CANCELLED,
   and its flow-run process group is gone;
2. a worker with the default drain takes the next run; Ctrl-C (SIGINT to the worker's process
   group, as a terminal sends it) mid-run: the run finishes COMPLETED, the worker exits 0, and the
   run publishes every sharded image: the cancelled run left nothing the next one could not redo.

This is deploy/README.md's stop procedure. Every process the test started is stopped as a group,
whatever happens, and checked gone.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pyarrow.parquet as pq
import pytest

from radsim_test_fixtures.prefect_server import (
    PREFECT,
    RADSIM,
    REPO,
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

DEADLINE_S = 240


def _deploy(base: str, env: dict) -> dict[str, dict]:
    def cli(*args: str) -> str:
        done = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return done.stdout

    cli(*PREFECT, "--no-prompt", "work-pool", "create", "radsim-process", "--type", "process")
    out = cli(*RADSIM, "deploy")
    assert "pipeline/pipeline  cron '17 4 * * 2' (environment)" in out, out
    return {d["name"]: d for d in api(f"{base}/deployments/filter", {})}


def _run_mid_flight(base: str, deployment: dict, toml, worker_log) -> str:
    """Start a pipeline run and return its id once it is past its first stage."""
    run_id = api(f"{base}/deployments/{deployment['id']}/create_flow_run",
                 {"parameters": {"config_path": str(toml), "demo_key": True}})["id"]
    wait_for(
        lambda: any("[1/6] ingesting" in m for m in run_logs(base, run_id)),
        120,
        "the run's first stage line on the server: " + worker_log.read_text()[-1500:] if worker_log.exists() else "",
    )
    return run_id


def _listed() -> set[int]:
    """What deploy/README's check lists: `pgrep -af "radsim worker|prefect.engine"` (the worker, its flow runs)."""
    out = subprocess.run(["pgrep", "-af", "radsim worker|prefect.engine"], capture_output=True, text=True).stdout
    return {int(line.split()[0]) for line in out.splitlines()}


def _stopped(worker: subprocess.Popen, log, limit_s: float = 90) -> int:
    try:
        return worker.wait(limit_s)
    except subprocess.TimeoutExpired:
        raise AssertionError("the worker did not stop:\n" + log.read_text()[-3000:]) from None


@pytest.mark.slow
@pytest.mark.timeout(DEADLINE_S + 60)
def test_the_worker_stops_cleanly_and_the_next_run_redoes_a_cancelled_one(tmp_path):
    from radsim.flows.run_config import ScheduleSection
    from radsim.synthetic import generate_cohort

    cohort = generate_cohort(tmp_path / "cohort", exams=24, seed=21, image_size=64, progress=False)
    warehouse = tmp_path / "wh"
    toml = tmp_path / "radsim.toml"
    toml.write_text(
        f'[paths]\ninbox = "{cohort.inbox}"\nwarehouse = "{warehouse}"\n'
        "[imaging]\nimage_size = 64\n[model]\nimage_size = 64\nmax_steps = 3\nbatch_size = 8\nforce_promote = true\n"
        "[runner]\nworkers = 1\n"
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}/api"
    env = server_env(tmp_path / "prefect-home")
    client_env = {**env, "PREFECT_API_URL": base, "PREFECT_WORKER_QUERY_SECONDS": "1"}  # no 10 s wait for a run
    started, procs, pids = time.monotonic(), [], []
    try:
        procs.append(start_server(port, env, tmp_path, tmp_path / "server.log"))
        deployments = _deploy(base, {**client_env, "RADSIM_CRON": "17 4 * * 2"})
        schedules = {name: [s["schedule"]["cron"] for s in d["schedules"]] for name, d in deployments.items()}
        assert schedules == {"pipeline": ["17 4 * * 2"], "train": [ScheduleSection().train_cron], "label-reports": []}

        log_a = tmp_path / "worker-a.log"
        procs.append(start([*RADSIM, "worker", "--drain-seconds", "0"], client_env, log_a))
        first = _run_mid_flight(base, deployments["pipeline"], toml, log_a)
        seen = _listed()
        assert {procs[-1].pid, int(flow_run(base, first)["infrastructure_pid"])} <= seen  # the check sees both
        os.kill(procs[-1].pid, signal.SIGTERM)
        assert _stopped(procs[-1], log_a) == 0
        run = flow_run(base, first)
        pids.append(int(run["infrastructure_pid"]))
        assert run["state_type"] == "CANCELLED", (run["state"], log_a.read_text()[-3000:])

        log_b = tmp_path / "worker-b.log"
        procs.append(start([*RADSIM, "worker"], client_env, log_b))
        second = _run_mid_flight(base, deployments["pipeline"], toml, log_b)
        os.killpg(procs[-1].pid, signal.SIGINT)  # Ctrl-C: the terminal signals the worker's process group
        assert _stopped(procs[-1], log_b, DEADLINE_S - (time.monotonic() - started)) == 0
        run = flow_run(base, second)
        pids.append(int(run["infrastructure_pid"]))
        assert run["state_type"] == "COMPLETED", (run["state"], log_b.read_text()[-3000:])
    finally:
        for proc in reversed(procs):
            stop_group(proc)
    assert "cancelling 1 run(s) in flight" in log_a.read_text() and "no new runs" in log_b.read_text()
    assert all(group_gone(pid) for pid in [*pids, *(p.pid for p in procs)])  # no worker or flow-run process left
    assert not _listed() & {*pids, *(p.pid for p in procs)}  # deploy/README's check finds none of ours

    published = pq.read_table(warehouse / "published" / "embeddings")
    manifest = pq.read_table(warehouse / "shards" / "manifest.parquet")
    assert published.num_rows == manifest.num_rows > 0
    assert len(set(manifest.column("exam_key").to_pylist())) == 24  # every exam, once: nothing lost or doubled
    assert "exam_id" not in published.column_names
