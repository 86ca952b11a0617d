"""A real Prefect server on loopback for the tests that need one, and the REST reads they check it with.

Each server has its own PREFECT_HOME (its SQLite database is PREFECT_HOME/prefect.db) and a free
port; every process a test starts is in its own session, so it can be stopped as a group and
checked gone. Only the server's REST API is read back, as a person's tools would.
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
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PREFECT = [sys.executable, "-m", "prefect"]
# the installed console script, as a site runs it (`pgrep -f "radsim worker"` finds it), else the module
_SCRIPT = Path(sys.executable).with_name("radsim")
RADSIM = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "radsim.flows.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(url: str, body: Any = None) -> Any:
    """GET (no body) or POST (a JSON body) on the server's REST API."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as r:
        return json.loads(r.read())


def server_env(home: Path) -> dict[str, str]:
    """The environment of a test's Prefect processes: nothing of the caller's Prefect or radsim settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "RADSIM_"))}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    return env


def start_server(port: int, env: dict, cwd: Path, log: Path, limit_s: float = 90) -> subprocess.Popen:
    """`prefect server start` on loopback, returned once /health answers; stopped again if it never does."""
    started = time.monotonic()
    with open(log, "w") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen([*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env,
                                cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while True:
            try:
                if api(f"http://127.0.0.1:{port}/api/health") is True:
                    return proc
            except OSError:
                pass
            assert proc.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() - started < limit_s, f"Prefect server not healthy within {limit_s:.0f} s"
            time.sleep(0.5)
    except BaseException:
        stop_group(proc)
        raise


def start(args: list[str], env: dict, log: Path, cwd: Path = REPO, **kw: Any) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                **kw)


def stop_group(proc: subprocess.Popen, wait_s: float = 20) -> int | None:
    """SIGTERM to the process group, SIGKILL if still there after `wait_s`: what stopped it (None: it had exited)."""
    if proc.poll() is not None:
        return None
    for sig, wait in ((signal.SIGTERM, wait_s), (signal.SIGKILL, 5)):
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


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def wait_for(check: Any, limit_s: float, what: str, every: float = 0.5) -> Any:
    """Poll `check()` until it returns something truthy; fail naming `what` after `limit_s`."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"{what} not within {limit_s:.0f} s")


def flow_run(base: str, run_id: str) -> dict:
    return api(f"{base}/flow_runs/{run_id}")


def flow_runs_named(base: str, flow_name: str) -> list[dict]:
    return api(f"{base}/flow_runs/filter", {"flows": {"name": {"any_": [flow_name]}}})


def run_logs(base: str, run_id: str) -> list[str]:
    """Every log message of one flow run (its tasks' included), oldest first."""
    out: list[str] = []
    while True:
        page = api(f"{base}/logs/filter", {"logs": {"flow_run_id": {"any_": [run_id]}}, "sort": "TIMESTAMP_ASC",
                                           "offset": len(out), "limit": 200})
        out += [log["message"] for log in page]
        if len(page) < 200:
            return out


def run_artifacts(base: str, run_id: str) -> dict[str, dict]:
    """The artifacts of one flow run, by key."""
    found = api(f"{base}/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run_id]}}})
    return {a["key"]: a for a in found if a.get("key")}

