"""`radsim worker`'s stop: no new runs after a signal, the run in flight drained, then cancelled, never left RUNNING.

The whole stop with a real server, work pool and flow-run processes is
tests/flows/test_pipeline_server.py; these check the decisions with stand-ins, fast.
"""
from __future__ import annotations

import asyncio
import signal
from types import SimpleNamespace
from uuid import uuid4

import pytest

from radsim.flows import worker as worker_module
from radsim.flows.worker import StopRequest, drain, in_flight_slots, watch_submissions
from radsim.flows.worker_config import WorkerConfig


class FakeWorker:
    """A worker's poll and its slot count; `finish_after` polls of the drain loop, its run ends."""

    def __init__(self, runs):
        self.runs, self.polls, self.borrowed = runs, 0, 0

    async def get_and_submit_flow_runs(self):
        self.polls += 1
        self.borrowed = len(self.runs)
        return self.runs

    @property
    def limiter(self):
        return SimpleNamespace(borrowed_tokens=self.borrowed)


def _stop(**kw) -> tuple[StopRequest, list[str]]:
    said: list[str] = []
    return StopRequest(WorkerConfig(**kw), said.append), said


def test_signals_drain_then_hurry_then_stop_now():
    async def go():
        stop, said = _stop(drain_seconds=5)
        stop(signal.SIGTERM)
        assert stop.drain.is_set() and not stop.hurry.is_set() and "SIGTERM: no new runs" in said[0]
        stop(signal.SIGINT)
        assert stop.hurry.is_set() and not stop.now.is_set()
        stop(signal.SIGINT)
        assert stop.now.is_set() and len(said) == 3
    asyncio.run(go())


def test_no_new_run_is_taken_once_a_stop_is_asked():
    async def go():
        run = SimpleNamespace(id=uuid4())
        fake = FakeWorker([run])
        stop, _ = _stop()
        submitted = watch_submissions(fake, stop)
        assert await fake.get_and_submit_flow_runs() == [run] and submitted == {run.id}
        stop(signal.SIGTERM)
        assert await fake.get_and_submit_flow_runs() == [] and fake.polls == 1
    asyncio.run(go())


def test_a_run_that_finishes_within_the_drain_is_not_cancelled(monkeypatch):
    async def go():
        fake, cancelled = FakeWorker([]), []
        fake.borrowed = 1
        monkeypatch.setattr(worker_module, "request_cancel", lambda ids, why: cancelled.append(ids))
        stop, _ = _stop(drain_seconds=5)
        asyncio.get_running_loop().call_later(0.3, setattr, fake, "borrowed", 0)
        assert await drain(fake, {uuid4()}, stop) == [] and cancelled == []
    asyncio.run(go())


@pytest.mark.parametrize("hurry", [False, True])
def test_a_run_still_going_after_the_drain_or_a_second_signal_is_cancelled(monkeypatch, hurry):
    async def go():
        run_id, fake, cancelled = uuid4(), FakeWorker([]), []
        fake.borrowed = 1
        state = {"final": False}

        async def unfinished(ids):
            return [] if state["final"] else sorted(ids)

        async def request_cancel(ids, why):
            cancelled.append((ids, why))
            asyncio.get_running_loop().call_later(0.3, lambda: (setattr(fake, "borrowed", 0),
                                                                state.update(final=True)))

        monkeypatch.setattr(worker_module, "unfinished", unfinished)
        monkeypatch.setattr(worker_module, "request_cancel", request_cancel)
        stop, _ = _stop(drain_seconds=60 if hurry else 0.2, cancel_seconds=5)
        if hurry:
            stop(signal.SIGTERM)
            stop(signal.SIGTERM)
        started = asyncio.get_running_loop().time()
        assert await drain(fake, {run_id}, stop) == []
        assert cancelled and cancelled[0][0] == [run_id] and "next run redoes" in cancelled[0][1]
        assert asyncio.get_running_loop().time() - started < 5  # a second signal does not wait out the drain
    asyncio.run(go())


def test_a_run_that_ignores_its_cancellation_is_reported_for_a_forced_stop(monkeypatch):
    async def go():
        run_id, fake = uuid4(), FakeWorker([])
        fake.borrowed = 1

        async def unfinished(ids):
            return sorted(ids)

        async def request_cancel(ids, why):
            return None

        monkeypatch.setattr(worker_module, "unfinished", unfinished)
        monkeypatch.setattr(worker_module, "request_cancel", request_cancel)
        stop, _ = _stop(drain_seconds=0, cancel_seconds=0.3)
        assert await drain(fake, {run_id}, stop) == [run_id]  # serve() marks it CRASHED, never leaves it RUNNING
    asyncio.run(go())


def test_a_worker_not_yet_set_up_holds_no_slot():
    class NotSetUp:
        @property
        def limiter(self):
            raise RuntimeError("Worker has not been correctly initialized")

    assert in_flight_slots(NotSetUp()) == 0


def test_radsim_worker_needs_a_server(monkeypatch, capsys):
    from radsim.flows.cli import main

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert main(["worker"]) == 2
    assert "needs a Prefect server: set PREFECT_API_URL" in capsys.readouterr().err
    assert main(["worker", "--drain-seconds", "-1"]) == 2
    assert "--drain-seconds" in capsys.readouterr().err
