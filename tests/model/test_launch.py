"""`radsim train --nproc-per-node N`: torchrun owned by a Prefect task (issue 8's launcher acceptance).

* Through the CLI and the train_embedding flow, 2 gloo ranks with batch b take the same steps
  as one process with the doubled batch 2b fed as two halves of b (`--accumulate 2`). Why the
  halves and not one batch of 2b: ML2 mines triplets inside each rank's own b samples and
  BatchNorm normalises over each rank's b, so one 2b batch is a different computation
  (measured: 2.7e-3 apart), while DDP's gradient average equals the accumulated halves'. The
  sampler's global batch sequence is shared: rank r takes batches r, r+2, ...; the accumulating
  process takes them in pairs. BatchNorm running statistics are buffers (DDP broadcasts rank
  0's), so only parameters are compared.
* A rank killed mid-run stops the whole job with one line naming the rank and the signal,
  no rank is left running, and last.pt (a finished epoch) stays loadable for --resume.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from radsim.data_contracts import RadsimError, UsageError
from radsim.flows.commands.train import options, options_to_argv
from radsim.model.checkpoint import read_checkpoint
from radsim.model.launch import (
    LaunchOutcome,
    LaunchSpec,
    describe_failure,
    launch_training,
    tag_rank_line,
    torchrun_command,
)
from radsim.model.train import train_embedding_model

STEPS, B = 3, 16
ENTRY = "radsim.flows.torchrun"  # the command layer's rank entry point
ENV = {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}


def _train_args(argv: list[str]):
    from radsim.flows.cli import build_parser

    return build_parser().parse_args(["train", *argv])


def test_options_survive_the_trip_to_the_ranks_command_line():
    kw = {"loss": "triplet", "backbone": "small", "image_size": 64, "embedding_dim": 32, "batch_size": 8, "seed": 3,
          "device": "cpu", "resume": True, "max_minutes": 1.5, "progress": False, "threads": 1, "data": "memory",
          "accumulate": 2, "max_steps": 5, "epochs": 4, "lr": 0.01, "weight_decay": 0.0, "patience": 0,
          "augment": "none", "selection_min_patients": 0, "loader_workers": 2, "warmup": 0.5}
    back = options(_train_args(options_to_argv("S", "M", kw)))
    assert back == kw
    with pytest.raises(UsageError, match="views"):
        options_to_argv("S", "M", {**kw, "views": ["PA"]})


def test_torchrun_command_for_one_node_and_for_many():
    one = torchrun_command(LaunchSpec(nproc_per_node=2), ["--shards", "S"], "/logs", ENTRY)
    assert one[1:3] == ["-m", "torch.distributed.run"] and "--standalone" in one
    assert one[one.index("--max-restarts") + 1] == "0"  # a failed rank ends the job, it is not restarted
    assert one[-4:] == ["-m", "radsim.flows.torchrun", "--shards", "S"]
    many = torchrun_command(LaunchSpec(2, nnodes=3, node_rank=1, rdzv_endpoint="node0:29400"), [], "/logs", ENTRY)
    assert "--standalone" not in many and many[many.index("--rdzv-endpoint") + 1] == "node0:29400"
    with pytest.raises(UsageError, match="rdzv-endpoint"):
        LaunchSpec(2, nnodes=2).check()
    with pytest.raises(UsageError, match="node-rank"):
        LaunchSpec(2, nnodes=2, node_rank=2, rdzv_endpoint="h:1").check()


def test_failure_line_names_the_rank_its_error_and_the_kept_checkpoint(tmp_path):
    tail = ["[rank 1] radsim train: error: out of memory on cuda:1", "Root Cause (first observed failure):", "[0]:",
            "  rank      : 1 (local_rank: 1)", "  exitcode  : 1 (pid: 42)", "  traceback : To enable ..."]
    line = describe_failure(LaunchOutcome(1, tmp_path / "logs", tail), tmp_path, LaunchSpec(4))
    assert "\n" not in line
    assert "rank 1 of 4 exited with code 1 (radsim train: error: out of memory on cuda:1)" in line
    assert "No checkpoint was written yet" in line
    assert tag_rank_line("[default1]:hello") == "[rank 1] hello"
    across = LaunchSpec(2, nnodes=2, node_rank=1, rdzv_endpoint="h:1")
    tail = ["[node 1 local rank 0] radsim train: error: disk full", "Root Cause (first observed failure):",
            "  rank      : 2 (local_rank: 0)", "  exitcode  : 1 (pid: 7)"]
    line = describe_failure(LaunchOutcome(1, tmp_path / "logs", tail), tmp_path, across)
    assert "rank 2 of 4 exited with code 1 (radsim train: error: disk full)" in line


def test_a_torchrun_that_failed_before_any_rank_gives_its_last_line(tmp_path):
    tail = ["torchrun: error: argument --nproc-per-node: invalid int value: 'x'", ""]
    line = describe_failure(LaunchOutcome(2, tmp_path / "logs", tail), tmp_path, LaunchSpec(2))
    assert line.startswith("training failed: torchrun exited with code 2 (torchrun: error: argument")
    assert "\n" not in line


def test_a_usage_error_on_the_ranks_stays_a_usage_error(tmp_path):
    """Every rank refuses a folder that holds no shards (exit 2): the launcher says so once, exit 2 too."""
    (tmp_path / "shards").mkdir()
    with pytest.raises(UsageError) as err:
        launch_training(LaunchSpec(nproc_per_node=2), ["--shards", str(tmp_path / "shards"), "--out",
                                                       str(tmp_path / "m")], tmp_path / "m", on_line=lambda line: None,
                        env=ENV, entry=ENTRY)
    message = str(err.value)
    assert "\n" not in message and "exited with code 2" in message and "manifest" in message, message
    assert "No checkpoint was written yet" in message


def test_cli_launcher_with_two_gloo_ranks_matches_one_process_with_the_doubled_batch(train_shards, tmp_path):
    ddp_out, single_out = tmp_path / "ddp", tmp_path / "single"
    cmd = [sys.executable, "-m", "radsim.flows.cli", "train", "--nproc-per-node", "2",
           "--shards", str(train_shards["shards"]), "--out", str(ddp_out), "--device", "cpu", "--threads", "1",
           "--batch-size", str(B), "--epochs", "2", "--max-steps", str(STEPS), "--seed", "7"]
    proc = subprocess.run(cmd, env={**os.environ, **ENV}, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    assert "[rank 0] epoch 1" in proc.stdout  # rank 0's per-epoch line, streamed through the task
    assert sum("trained small-ml2-" in line for line in proc.stdout.splitlines()) == 1  # the summary, once
    assert list((ddp_out / "logs" / "torchrun").rglob("stdout.log"))  # per-rank logs kept

    train_embedding_model(train_shards["shards"], single_out, device="cpu", num_threads=1, batch_size=B, epochs=2,
                          max_steps=STEPS, seed=7, accumulate=2, progress=False)
    ddp, single = read_checkpoint(ddp_out / "last.pt"), read_checkpoint(single_out / "last.pt")
    assert ddp["card"]["training"]["world_size"] == 2 and ddp["progress"]["step"] == single["progress"]["step"] == STEPS
    from radsim.model.encoders import build_encoder

    torch.manual_seed(7)
    init = build_encoder("small").state_dict()
    moved = 0.0
    for name, _ in build_encoder("small").named_parameters():
        a, b = ddp["state_dict"][name], single["state_dict"][name]
        assert torch.allclose(a, b, rtol=1e-4, atol=2e-5), (name, (a - b).abs().max().item())
        moved = max(moved, (a - init[name]).abs().max().item())
    assert moved > 10 * 2e-5  # the steps moved the weights well beyond the tolerance (measured: 1.3e-3)


def _rank_pids(out_dir: Path) -> dict[int, int]:
    """{global rank: pid} of the training processes writing to `out_dir`."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            str(out_dir).encode() in cmdline
            and b"radsim.flows.torchrun" in cmdline
            and b"torch.distributed.run" not in cmdline
        ):
            ranks = [e for e in env if e.startswith(b"RANK=")]
            if ranks:
                found[int(ranks[0][5:])] = int(entry.name)
    return found


def _step_of(path: Path) -> int:
    try:
        return int(read_checkpoint(path)["progress"]["step"])
    except Exception:  # noqa: BLE001 - being written, or not yet there
        return 0


def test_a_killed_rank_stops_the_job_and_keeps_the_last_good_checkpoint(train_shards, tmp_path):
    out = tmp_path / "model"
    argv = ["--shards", str(train_shards["shards"]), "--out", str(out), "--device", "cpu", "--threads", "1",
            "--batch-size", str(B), "--epochs", "200", "--patience", "0", "--seed", "1", "--no-progress"]
    lines: list[str] = []
    failure: list[BaseException] = []

    def launch() -> None:
        try:
            launch_training(LaunchSpec(nproc_per_node=2), argv, out, on_line=lines.append, env=ENV, entry=ENTRY)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            failure.append(exc)

    runner = threading.Thread(target=launch, daemon=True)
    runner.start()
    deadline = time.monotonic() + 180
    while _step_of(out / "last.pt") == 0:  # wait for a finished epoch
        assert runner.is_alive() and time.monotonic() < deadline, lines[-20:]
        time.sleep(0.5)
    pids = _rank_pids(out)
    assert sorted(pids) == [0, 1], pids
    os.kill(pids[1], signal.SIGKILL)
    runner.join(timeout=120)
    assert not runner.is_alive(), "the launcher did not return after a rank died"

    assert failure and isinstance(failure[0], RadsimError), failure
    message = str(failure[0])
    assert "\n" not in message
    assert "rank 1 of 2 was killed by SIGKILL" in message and "--resume" in message and "last.pt" in message
    assert not _rank_pids(out), "a rank outlived the failed job"
    kept = read_checkpoint(out / "last.pt")  # loadable, not torn
    assert kept["progress"]["step"] > 0
    assert f"(step {kept['progress']['step']})" in message


LAUNCHER = """
import sys
from radsim.model.launch import LaunchSpec, launch_training
launch_training(LaunchSpec(nproc_per_node=2), sys.argv[2:], sys.argv[1], on_line=lambda line: None,
                entry="radsim.flows.torchrun")
"""


def test_killing_the_launcher_leaves_no_rank_running(train_shards, tmp_path):
    """The flow process (a Prefect worker's job, say) dies by SIGKILL: torchrun and its ranks follow it."""
    out = tmp_path / "model"
    argv = ["--shards", str(train_shards["shards"]), "--out", str(out), "--device", "cpu", "--threads", "1",
            "--batch-size", str(B), "--epochs", "200", "--patience", "0", "--no-progress"]
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(out), *argv], env={**os.environ, **ENV})
    try:
        deadline = time.monotonic() + 120
        while len(_rank_pids(out)) < 2:
            assert launcher.poll() is None and time.monotonic() < deadline, "the ranks did not start"
            time.sleep(0.5)
        launcher.kill()
        launcher.wait(timeout=10)
        deadline = time.monotonic() + 60
        while _rank_pids(out) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _rank_pids(out), "ranks outlived their launcher"
    finally:
        launcher.kill()
        for pid in _rank_pids(out).values():
            os.kill(pid, signal.SIGKILL)
