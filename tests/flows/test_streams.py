"""A flow run whose reader has gone (a worker stopped while its flow-run process goes on) finishes its work.

The child processes here are flow runs whose stdout and stderr are pipes the parent closes
once the flow has started, as a vanished worker's pipes are closed: with `closed_pipe_safe` the run
completes and writes its output; without it, Prefect's console handler (rich) exits the process on
the first broken pipe (SystemExit(1): a CRASHED run), which shows the check can fail.
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import time

import pytest

from radsim.flows.streams import ClosedPipeSafe, closed_pipe_safe

CHILD = textwrap.dedent("""
    import logging, pathlib, sys, time
    from radsim.flows.prefect_env import configure_prefect
    configure_prefect()
    from prefect import flow, get_run_logger
    from radsim.flows.streams import closed_pipe_safe
    import contextlib

    out = pathlib.Path(sys.argv[1])
    guard = closed_pipe_safe if sys.argv[2] == "guarded" else contextlib.nullcontext

    @flow(name="reader-gone")
    def work():
        with guard():
            (out.parent / "started").write_text("yes")
            while not (out.parent / "closed").exists():
                time.sleep(0.1)
            for i in range(200):
                print(f"stage line {i}", flush=True)
                get_run_logger().warning(f"a warning {i}")
                sys.stderr.write(f"progress {i}\\n")
            out.write_text("all work written")
        return "done"

    work()
""")


def test_a_closed_pipe_is_dropped_not_raised():
    read, write = os.pipe()
    os.close(read)
    stream = ClosedPipeSafe(io.TextIOWrapper(os.fdopen(write, "wb"), write_through=True))
    assert stream.write("nobody reads this\n") == len("nobody reads this\n")
    stream.flush()
    assert stream.write("nor this\n") == len("nor this\n")


def test_the_guard_wraps_the_streams_and_the_logging_consoles_then_restores_them():
    import logging

    from radsim.flows.prefect_env import configure_prefect

    configure_prefect()
    consoles = [h.console for h in logging.getLogger().handlers if type(h).__name__ == "PrefectConsoleHandler"]
    assert consoles
    before = [c.file for c in consoles], sys.stdout, sys.stderr
    with closed_pipe_safe():
        assert isinstance(sys.stdout, ClosedPipeSafe) and isinstance(sys.stderr, ClosedPipeSafe)
        assert all(isinstance(c.file, ClosedPipeSafe) for c in consoles)
    assert ([c.file for c in consoles], sys.stdout, sys.stderr) == before


def _run_child(tmp_path, mode: str) -> tuple[int, bool]:
    folder = tmp_path / mode
    folder.mkdir()
    env = {**os.environ, "PREFECT_HOME": str(folder / "home"), "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "INFO"}
    env.pop("PREFECT_API_URL", None)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(folder / "output.txt"), mode], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 150
        while not (folder / "started").exists():
            assert child.poll() is None and time.monotonic() < deadline, "the child flow never started"
            time.sleep(0.1)
        child.stdout.close()  # the reader goes away, as a killed worker does
        child.stderr.close()
        (folder / "closed").write_text("yes")
        code = child.wait(120)
    finally:
        if child.poll() is None:
            child.kill()
    return code, (folder / "output.txt").exists()


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_flow_whose_reader_has_gone_finishes_its_work_only_when_guarded(tmp_path):
    assert _run_child(tmp_path, "guarded") == (0, True)
    code, written = _run_child(tmp_path, "bare")
    assert code != 0 and not written  # Prefect's console handler ends an unguarded run on the broken pipe
