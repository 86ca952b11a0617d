"""Acceptance: the `pipeline` deployment runs on a real Prefect server through a process worker.

Starts `prefect server start` on 127.0.0.1 (own PREFECT_HOME, free port), creates the process
work pool, deploys everything in deploy/prefect.yaml, starts a worker, triggers `pipeline`
through the API on a tiny synthetic inbox, waits (bounded), checks the published table, and
stops the server and worker process groups whatever happens.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[2]
PREFECT = [sys.executable, "-m", "prefect"]
DEADLINE_S = 240


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def _stop(proc: subprocess.Popen) -> int | None:
    """Stop a Prefect process the way deploy/README says: SIGINT, a second SIGINT if the first only
    starts a graceful drain, SIGKILL as the last resort (SIGTERM does not stop `prefect worker start`).

    Returns the signal that stopped it (None if it had already exited).
    """
    if proc.poll() is not None:
        return None
    for sig, wait in ((signal.SIGINT, 15), (signal.SIGINT, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return sig
        try:
            proc.wait(wait)
            return sig
        except subprocess.TimeoutExpired:
            continue
    return signal.SIGKILL


def _start_server(port: int, env: dict, cwd: Path, log: Path, limit_s: float) -> subprocess.Popen:
    """`prefect server start` on loopback, returned once /health answers; stopped again if it never does."""
    started = time.monotonic()
    with open(log, "w") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen([*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env,
                                cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while True:
            try:
                if _get(f"http://127.0.0.1:{port}/api/health") is True:
                    return proc
            except OSError:
                pass
            assert proc.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() - started < limit_s, f"Prefect server not healthy within {limit_s:.0f} s"
            time.sleep(0.5)
    except BaseException:
        _stop(proc)
        raise


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.slow
@pytest.mark.timeout(DEADLINE_S + 60)
def test_pipeline_deployment_runs_on_a_real_server(tmp_path):
    from radsim.synthetic import generate_cohort

    cohort = generate_cohort(tmp_path / "cohort", 24, seed=21, image_size=64, progress=False)
    warehouse = tmp_path / "wh"
    toml = tmp_path / "radsim.toml"
    toml.write_text(f'[paths]\ninbox = "{cohort.inbox}"\nwarehouse = "{warehouse}"\n'
                    '[imaging]\nimage_size = 64\n[model]\nimage_size = 64\nmax_steps = 3\nbatch_size = 8\nforce_promote = true\n'
                    '[runner]\nworkers = 1\n')
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "RADSIM_"))}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               DO_NOT_TRACK="1", PREFECT_LOGGING_LEVEL="WARNING")
    client_env = {**env, "PREFECT_API_URL": api}
    logs = tmp_path / "logs"
    logs.mkdir()
    started = time.monotonic()
    procs: list[subprocess.Popen] = []
    try:
        procs.append(_start_server(port, env, tmp_path, logs / "server.log", 90))

        def cli(*args: str) -> str:
            done = subprocess.run([*PREFECT, "--no-prompt", *args], env=client_env, cwd=REPO, capture_output=True,
                                  text=True, timeout=120)
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
            return done.stdout

        cli("work-pool", "create", "radsim-process", "--type", "process")
        out = cli("deploy", "--all", "--prefect-file", str(REPO / "deploy" / "prefect.yaml"))
        for name in ("pipeline/pipeline", "label-reports/label-reports", "train/train"):
            assert name in out
        procs.append(subprocess.Popen([*PREFECT, "worker", "start", "--pool", "radsim-process", "--limit", "1"],
                                      env=client_env, cwd=REPO, stdout=open(logs / "worker.log", "w"),
                                      stderr=subprocess.STDOUT, start_new_session=True))
        out = cli("deployment", "run", "pipeline/pipeline", "--param", f"config_path={toml}",
                  "--param", "demo_key=true")
        run_id = next(line.split("UUID:")[1].strip() for line in out.splitlines() if "UUID:" in line)
        state = None
        while time.monotonic() - started < DEADLINE_S:
            state = _get(f"{api}/flow_runs/{run_id}")["state_type"]
            if state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                break
            time.sleep(2)
        assert state == "COMPLETED", f"flow run {state}; worker log:\n" + (logs / "worker.log").read_text()[-3000:]
    finally:
        stopped = {proc.args[3]: _stop(proc) for proc in reversed(procs)}
    assert stopped.get("worker") == signal.SIGINT, stopped  # SIGINT stops the worker: no SIGKILL needed
    assert all(_group_gone(proc.pid) for proc in procs)  # nothing left of the server or the worker

    published = pq.read_table(warehouse / "published" / "embeddings")
    manifest = pq.read_table(warehouse / "shards" / "manifest.parquet")
    assert published.num_rows == manifest.num_rows > 0
    assert "exam_id" not in published.column_names
    assert (warehouse / "restricted" / "ledger.parquet").exists() and (warehouse / "config.json").exists()
