"""DDP on CPU: 2 gloo ranks with batch b each take the same steps as 1 process accumulating 2 batches of b.

What is compared, and why: ML2 mines its triplets inside each rank's own b samples and
BatchNorm normalises with each rank's own batch statistics, so 2 ranks x b is NOT the same
computation as one batch of 2b. It is the same as one process that runs the two b-sized
halves separately and averages their losses (`accumulate=2`), because DDP averages the two
ranks' gradients. The sampler's global batch sequence is shared: rank r takes batches
r, r+2, ...; the accumulating process takes them in pairs. So after a few steps the
parameters must agree to float tolerance. BatchNorm running statistics are buffers, not
parameters: DDP broadcasts rank 0's, the single process updates them on both halves, so
they are left out of the comparison.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import torch

from radsim.model.checkpoint import read_checkpoint
from radsim.model.train import train_embedding_model

STEPS, B = 3, 16


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_match_one_process_accumulating_two_batches(train_shards, tmp_path):
    ddp_out, single_out = tmp_path / "ddp", tmp_path / "single"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(_free_port()), "-m", "radsim.model.train",
           "--shards", str(train_shards["shards"]), "--out", str(ddp_out), "--device", "cpu", "--threads", "1",
           "--batch-size", str(B), "--epochs", "2", "--max-steps", str(STEPS), "--seed", "7", "--no-progress"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("trained small-ml2-") == 1  # rank 0 reports, rank 1 stays quiet

    train_embedding_model(train_shards["shards"], single_out, device="cpu", num_threads=1, batch_size=B, epochs=2,
                          max_steps=STEPS, seed=7, accumulate=2, progress=False)
    ddp, single = read_checkpoint(ddp_out / "last.pt"), read_checkpoint(single_out / "last.pt")
    assert ddp["progress"]["step"] == single["progress"]["step"] == STEPS
    assert ddp["card"]["training"]["world_size"] == 2 and single["card"]["training"]["accumulate"] == 2
    assert ddp["card"]["training"]["steps_per_epoch"] == single["card"]["training"]["steps_per_epoch"]

    from radsim.model.encoders import build_encoder

    params = {name for name, _ in build_encoder("small").named_parameters()}
    torch.manual_seed(7)
    init = build_encoder("small").state_dict()
    moved = 0.0
    for name in params:
        a, b = ddp["state_dict"][name], single["state_dict"][name]
        assert torch.allclose(a, b, rtol=1e-4, atol=2e-5), (name, (a - b).abs().max().item())
        moved = max(moved, (a - init[name]).abs().max().item())
    assert moved > 1e-3  # the steps really changed the weights, so agreement means something
