"""`radsim train --nproc-per-node N`: run the training entry point under torchrun (DESIGN §8, §11).

radsim does not spawn or supervise ranks itself: torchrun (torch.distributed.run) does, with
its rendezvous, its signal forwarding and its rule that one failed rank stops the whole
group (`--max-restarts 0`). This module only

* builds the torchrun command line: one node (`--standalone`, a free loopback port) or
  several (`--nnodes M --rdzv-endpoint HOST:PORT --rdzv-id JOB`, c10d: the rendezvous assigns
  the global ranks, `--node-rank` only labels this node's lines);
* runs it in its own process group and hands every output line, tagged `[rank r]` by
  torchrun's `--tee`, to a callback (the Prefect task streams them to the run log);
* turns a failure into one line: which rank failed and how (its own error line, or the
  signal that killed it), and which checkpoint is kept for `--resume`. Only rank 0 writes
  checkpoints, atomically, so last.pt is always the last completed epoch.

Per-rank stdout/stderr are also kept under MODEL_DIR/logs/torchrun/ for post-mortems.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from radsim.data_contracts import RadsimError, UsageError
from radsim.warehouse.layout import LAST_FILE

LOG_SUBDIR = Path("logs") / "torchrun"
MIN_PROCESSES = 1  # processes per node and nodes: the bound radsim.toml's model.nproc_per_node reads too
_RANK_LINE = re.compile(r"^\[default(\d+)\]:(.*)$")
_ROOT_CAUSE = re.compile(r"rank\s*:\s*(\d+)\s*\(local_rank:\s*(\d+)\)\s*\n\s*exitcode\s*:\s*(-?\d+)")
_TORCHRUN_LOG = re.compile(r"^[IWEF]\d{4} ")
_SIGNAL = re.compile(r"Signal (\d+) \((SIG\w+)\)")
_ERROR_MARKERS = ("radsim train: error:", "radsim train: failed:", "radsim train: interrupted")
USAGE_EXIT = 2
LAUNCHED_ENV = "RADSIM_LAUNCHED"  # radsim's exit code for usage or input errors (DESIGN §4)


@dataclass(frozen=True)
class LaunchSpec:
    """Where the ranks run: N processes on this node, on one node or as one node of many."""

    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str | None = None  # HOST:PORT of the c10d rendezvous (node 0), for nnodes > 1
    rdzv_id: str = "radsim-train"

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes

    def check(self) -> None:
        if self.nproc_per_node < MIN_PROCESSES or self.nnodes < MIN_PROCESSES:
            raise UsageError(f"--nproc-per-node and --nnodes must be at least 1 (got {self.nproc_per_node}, "
                             f"{self.nnodes})")
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise UsageError("--nnodes > 1 needs --rdzv-endpoint HOST:PORT (node 0's address, the same on every node)")
        if not 0 <= self.node_rank < self.nnodes:
            raise UsageError(f"--node-rank must be in 0..{self.nnodes - 1} (got {self.node_rank})")


def torchrun_command(spec: LaunchSpec, train_argv: Sequence[str], log_dir: str | Path, entry: str) -> list[str]:
    """The torchrun command line that runs `python -m ENTRY TRAIN_ARGV` on every rank.

    `entry` is the rank's module, named by the caller (the command layer owns `radsim train`'s
    entry point), so this module names nothing above it.
    """
    spec.check()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(spec.nproc_per_node),
           "--max-restarts", "0", "--tee", "3", "--log-dir", str(log_dir)]
    if spec.nnodes == 1:
        cmd.append("--standalone")  # c10d store on a free local port: no port to pick or collide on
    else:
        cmd += ["--nnodes", str(spec.nnodes), "--rdzv-backend", "c10d",
                "--rdzv-endpoint", str(spec.rdzv_endpoint), "--rdzv-id", spec.rdzv_id]
    return cmd + ["-m", entry, *train_argv]


@dataclass
class LaunchOutcome:
    returncode: int
    log_dir: Path
    tail: list[str]


def rank_label(spec: LaunchSpec) -> str:
    """How a rank's lines are tagged: on one node the local rank is the global rank; across nodes
    c10d assigns global ranks at rendezvous, so lines carry the node and the local rank."""
    return "rank" if spec.nnodes == 1 else f"node {spec.node_rank} local rank"


def tag_rank_line(line: str, label: str = "rank") -> str:
    """`[default1]:text` (torchrun's --tee prefix, the local rank) → `[rank 1] text`."""
    m = _RANK_LINE.match(line)
    return f"[{label} {m.group(1)}] {m.group(2)}" if m else line


def run_torchrun(cmd: Sequence[str], log_dir: Path, on_line: Callable[[str], None], *,
                 env: dict[str, str] | None = None, label: str = "rank", tail_lines: int = 200) -> LaunchOutcome:
    """Run torchrun in its own process group; stream its lines; kill the whole group if we are stopped."""
    log_dir.mkdir(parents=True, exist_ok=True)
    child_env = {**os.environ, **(env or {})}
    child_env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    child_env[LAUNCHED_ENV] = "1"  # rank 0 leaves the final summary to the launcher
    prctl = _prctl()  # looked up here: the child, forked from a threaded process, must not dlopen
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                            env=child_env, start_new_session=True,
                            preexec_fn=(lambda: prctl(PR_SET_PDEATHSIG, signal.SIGTERM)) if prctl else None)
    tail: deque[str] = deque(maxlen=tail_lines)
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = tag_rank_line(raw.rstrip("\n"), label)
            tail.append(line)
            on_line(line)
        proc.wait()
    except BaseException:  # KeyboardInterrupt, a cancelled Prefect run: no orphaned ranks
        _stop_group(proc)
        raise
    return LaunchOutcome(proc.returncode, log_dir, list(tail))


PR_SET_PDEATHSIG = 1


def _prctl() -> Callable[..., int] | None:
    """libc's prctl on Linux (None elsewhere): a process asks for a signal when its parent dies."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    return ctypes.CDLL(None, use_errno=True).prctl


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask for `sig` when the parent dies, even by SIGKILL: torchrun's ranks call this at start.

    torchrun starts each rank in a session of its own, so a signal to torchrun's group does
    not reach them; with this, a rank never outlives the torchrun that started it.
    """
    prctl = _prctl()
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, sig)


def _stop_group(proc: subprocess.Popen, grace_s: float = 40.0) -> None:
    """SIGTERM to torchrun (it stops its ranks, SIGKILLing them after its own 30 s), SIGKILL after `grace_s`.

    Ranks also die with torchrun (die_with_parent), so none is orphaned either way.
    """
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def describe_failure(outcome: LaunchOutcome, model_dir: Path, spec: LaunchSpec) -> str:
    """One line: the failed rank, why, and what is kept for --resume."""
    found = _root_cause(outcome)
    if found:
        rank, local_rank, exitcode = found
        signal_name = _SIGNAL.search(_root_section(outcome))
        how = (f"was killed by {signal_name.group(2)}" if signal_name else
               f"was killed by signal {-exitcode}" if exitcode < 0 else f"exited with code {exitcode}")
        reason = _rank_error(outcome.tail, f"[{rank_label(spec)} {local_rank}] ")
        line = f"training failed: rank {rank} of {spec.world_size} {how}" + (f" ({reason})" if reason else "")
        line += "; torchrun stopped the other ranks. "
    else:
        reason = _rank_error(outcome.tail, None)
        line = f"training failed: torchrun exited with code {outcome.returncode}" + (f" ({reason})" if reason else "")
        line += ". "
    last = model_dir / LAST_FILE
    if last.exists():
        line += f"The last good checkpoint {last} (step {_checkpoint_step(last)}) is kept: fix the cause and rerun " \
                f"with --resume"
    else:
        line += "No checkpoint was written yet: fix the cause and rerun"
    return line + f"; per-rank logs in {outcome.log_dir}"


def _root_section(outcome: LaunchOutcome) -> str:
    """torchrun's summary after "Root Cause" names the first failure (the whole tail if it is absent)."""
    return "\n".join(outcome.tail).split("Root Cause", 1)[-1]


def _root_cause(outcome: LaunchOutcome) -> tuple[int, int, int] | None:
    """(global rank, local rank, exit code) of the first failed rank, or None when no rank failed."""
    found = _ROOT_CAUSE.search(_root_section(outcome))
    return (int(found.group(1)), int(found.group(2)), int(found.group(3))) if found else None


def _rank_error(tail: Sequence[str], prefix: str | None) -> str | None:
    """The failed rank's own error line (the one line `radsim train` printed before exiting).

    Without a rank (torchrun itself failed, e.g. the rendezvous), its last line says why.
    """
    if prefix is None:
        return next((line.strip() for line in reversed(tail) if line.strip()), None)
    lines = [line for line in tail if line.startswith(prefix)]
    for line in reversed(lines):
        body = line.split("] ", 1)[-1].strip()
        if any(marker in body for marker in _ERROR_MARKERS):
            return body
    return None


def _checkpoint_step(path: Path) -> str:
    try:
        from .checkpoint import read_checkpoint

        return str(read_checkpoint(path)["progress"]["step"])
    except Exception:  # noqa: BLE001 - only for the message
        return "?"


def launch_training(spec: LaunchSpec, train_argv: Sequence[str], model_dir: str | Path,
                    on_line: Callable[[str], None] | None = None, *, entry: str,
                    env: dict[str, str] | None = None) -> LaunchOutcome:
    """Run training on `spec`'s ranks (each `python -m ENTRY`); a failed rank raises one RadsimError line."""
    model_dir = Path(model_dir)
    log_dir = model_dir / LOG_SUBDIR
    cmd = torchrun_command(spec, train_argv, log_dir, entry)
    say = on_line or (lambda line: print(line, flush=True))
    outcome = run_torchrun(cmd, log_dir, say, env=env, label=rank_label(spec))
    if outcome.returncode != 0:
        message = describe_failure(outcome, model_dir, spec)
        cause = _root_cause(outcome)
        raise (UsageError if cause and cause[2] == USAGE_EXIT else RadsimError)(message)
    return outcome


def for_console(line: str) -> bool:
    """Rank lines and torchrun's own log lines; not its ChildFailedError traceback (the one-line error says it)."""
    return line.startswith(("[rank ", "[node ")) or bool(_TORCHRUN_LOG.match(line))
