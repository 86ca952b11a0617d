"""`radsim worker`: Prefect's process worker, stopped the way a process supervisor stops a service.

Why not `prefect worker start` (Prefect 3.9, prefect/utilities/processutils.py
`setup_signal_handlers_worker` and prefect/runner/_process_manager.py):

- its first SIGTERM or SIGINT re-sends SIGINT to itself through the handler that was there when
  it started, and its second one is SIGKILL. Started with SIGINT ignored (`prefect worker start &`
  from a script: a shell ignores SIGINT in its background jobs), the first signal does nothing
  and the second SIGKILLs the worker, leaving its flow-run process (`python -m prefect.engine`,
  own process group) behind with PPID 1 and a pipe to nobody;
- when it does stop, it cancels the run in flight at once: the flow-run process group gets
  SIGTERM with no cancellation intent, and the run stays RUNNING on the server for good (no
  state is proposed), which also holds the deployment's concurrency slot.

This worker is Prefect's own ProcessWorker with its own stop: the first SIGTERM or SIGINT stops
polling for new runs and lets the run in flight finish for `drain_seconds`; then it asks the
server to cancel that run, which the worker's own cancellation path carries out (a cancel intent
to the flow-run process, SIGTERM to its process group, the run marked CANCELLED); a second
signal skips the wait. Only a run that does not stop within `cancel_seconds` is stopped by
force and marked CRASHED, never left RUNNING. A cancelled pipeline run is resumable: the ledger
is written only at the end of a run, so the next run redoes what the cancelled one did not finish.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import Any
from uuid import UUID

from radsim.flows.prefect_env import configure_prefect

configure_prefect()  # before prefect is imported

from prefect.client.orchestration import get_client  # noqa: E402
from prefect.states import Cancelling, Crashed  # noqa: E402
from prefect.workers.process import ProcessWorker  # noqa: E402

from radsim.flows.worker_config import WorkerConfig  # noqa: E402


class StopRequest:
    """SIGTERM/SIGINT: the first stops polling and starts the drain, the second cancels now, the third stops now."""

    def __init__(self, config: WorkerConfig, say: Any = print):
        self.config, self.say, self.count = config, say, 0
        self.drain, self.hurry, self.now = asyncio.Event(), asyncio.Event(), asyncio.Event()

    def __call__(self, signum: int) -> None:
        self.count += 1
        name = signal.Signals(signum).name
        if self.count == 1:
            self.say(
                f"radsim worker: {name}: no new runs; "
                f"a run in flight may finish for {self.config.drain_seconds:.0f} s, "
                "then it is cancelled (send it again to cancel now)"
            )
            self.drain.set()
        elif self.count == 2:
            self.say(f"radsim worker: {name} again: cancelling the run in flight now")
            self.hurry.set()
        else:
            self.say(f"radsim worker: {name} a third time: stopping the run in flight by force")
            self.now.set()


def in_flight_slots(worker: ProcessWorker) -> int:
    """Runs the worker holds a slot for: from submission until their process has exited."""
    try:
        return int(worker.limiter.borrowed_tokens)  # Prefect's own count (BaseWorker.start, run_once)
    except RuntimeError:  # not set up yet: nothing submitted
        return 0


def watch_submissions(worker: ProcessWorker, stop: StopRequest) -> set[UUID]:
    """Make the worker's poll submit nothing once a stop is asked; return the ids of the runs it submits."""
    submitted: set[UUID] = set()
    poll = worker.get_and_submit_flow_runs

    async def poll_unless_stopping() -> list:
        if stop.drain.is_set():
            return []
        runs = await poll()
        submitted.update(run.id for run in runs)
        return runs

    worker.get_and_submit_flow_runs = poll_unless_stopping  # type: ignore[method-assign]
    return submitted


async def _wait(busy: Any, seconds: float, *stops: asyncio.Event) -> bool:
    """Wait until `busy()` is false (True) or `seconds` pass or one of `stops` is set (False)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while busy():
        if any(s.is_set() for s in stops) or asyncio.get_running_loop().time() >= deadline:
            return False
        await asyncio.sleep(0.2)
    return True


async def unfinished(run_ids: set[UUID]) -> list[UUID]:
    """The runs among `run_ids` the server does not yet hold in a final state."""
    async with get_client() as client:
        runs = [await client.read_flow_run(run_id) for run_id in run_ids]
    return [run.id for run in runs if run.state is None or not run.state.is_final()]


async def request_cancel(run_ids: list[UUID], why: str) -> None:
    """CANCELLING on the server: the worker's own cancellation path stops the process and marks it CANCELLED."""
    async with get_client() as client:
        for run_id in run_ids:
            await client.set_flow_run_state(run_id, Cancelling(message=why))


async def mark_crashed(run_ids: list[UUID], why: str) -> None:
    """A run the worker had to stop by force is CRASHED, never left RUNNING (it would hold its concurrency slot)."""
    async with get_client() as client:
        for run_id in run_ids:
            await client.set_flow_run_state(run_id, Crashed(message=why), force=True)


async def live_process_groups(run_ids: set[UUID]) -> list[int]:
    """The flow-run process groups of `run_ids` that are still alive (the worker starts each in its own group)."""
    async with get_client() as client:
        pids = [(await client.read_flow_run(run_id)).infrastructure_pid for run_id in run_ids]
    alive = []
    for pid in (int(p) for p in pids if p and str(p).isdigit()):
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            continue
        except PermissionError:
            pass
        alive.append(pid)
    return alive


async def drain(worker: ProcessWorker, submitted: set[UUID], stop: StopRequest) -> list[UUID]:
    """Let the run in flight finish, else cancel it; the runs still not final after `cancel_seconds`."""
    config, busy = stop.config, (lambda: in_flight_slots(worker) > 0)
    if await _wait(busy, config.drain_seconds, stop.hurry, stop.now):
        return []
    left = await unfinished(submitted)
    if left and not stop.now.is_set():
        stop.say(f"radsim worker: cancelling {len(left)} run(s) in flight: {', '.join(map(str, left))}")
        await request_cancel(left, "the radsim worker was stopped (SIGTERM/SIGINT) before this run finished; the "
                                   "next run redoes what it did not finish")
        await _wait(busy, config.cancel_seconds, stop.now)
    return await unfinished(submitted)


async def serve(config: WorkerConfig, say: Any = print) -> int:
    """Run the worker until it is stopped; 0 when every run it started ended in a final state."""
    from prefect.settings import PREFECT_WORKER_HEARTBEAT_SECONDS, PREFECT_WORKER_PREFETCH_SECONDS

    loop = asyncio.get_running_loop()
    stop = StopRequest(config, say)
    for signum in (signal.SIGTERM, signal.SIGINT):  # replaces SIG_IGN too (a background job's SIGINT)
        loop.add_signal_handler(signum, stop, signum)
    worker = ProcessWorker(name=config.name, work_pool_name=config.pool, limit=config.limit,
                           prefetch_seconds=int(PREFECT_WORKER_PREFETCH_SECONDS.value()),
                           heartbeat_interval_seconds=int(PREFECT_WORKER_HEARTBEAT_SECONDS.value()))
    submitted = watch_submissions(worker, stop)
    main = asyncio.create_task(worker.start(printer=say))
    asked = asyncio.create_task(stop.drain.wait())
    await asyncio.wait({main, asked}, return_when=asyncio.FIRST_COMPLETED)
    left: list[UUID] = []
    if not main.done():
        left = await drain(worker, submitted, stop)
        main.cancel()
    asked.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await main  # a worker that ended by itself raises its error here
    if left:
        await mark_crashed(left, "the radsim worker stopped this run by force: it did not stop within "
                                 f"{config.cancel_seconds:.0f} s of its cancellation; rerun it")
        say(f"radsim worker: {len(left)} run(s) stopped by force and marked CRASHED")
    alive = await live_process_groups(submitted)
    if alive:
        say(f"radsim worker: {worker.name} stopped, but flow-run process group(s) {alive} are still alive "
            f"(stop them with: kill -TERM -- -PGID)")
        return 1
    say(f"radsim worker: {worker.name} stopped; no flow-run process of it is left")
    return 1 if left else 0
