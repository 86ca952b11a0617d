"""`radsim train`: shards -> a trained encoder in MODEL_DIR (model.pt, last.pt, model_card.json), DESIGN §8.

`--nproc-per-node N` (and `--nnodes`) trains with DDP: the Prefect flow `train_embedding` runs
torchrun in a task that owns the process group and streams every rank's lines to the run log
(radsim.model.launch). Without a launcher flag, torchrun can also be called directly:
    torchrun --nproc-per-node 2 -m radsim.flows.torchrun --shards SHARDS --out MODEL_DIR
"""
from __future__ import annotations

import argparse
import os
import sys

from radsim.data_contracts.errors import UsageError
from radsim.model.config import rank_argv as options_to_argv  # noqa: F401 - the argv each torchrun rank parses
from radsim.model.launch import LaunchSpec

NAME = "train"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        NAME,
        help="train the metric-learning encoder on shards",
        description="Train an image encoder with a multi-label metric-learning loss on the labelled frontal "
        "films of SHARDS_DIR's train split, with train-time augmentation for chest films; validate P@10 and "
        "normal-vs-abnormal AUC on the val split every epoch (early stopping on P@10 when the val split has "
        "enough patients). Writes MODEL_DIR/model.pt (the model), last.pt (resume state) and model_card.json. "
        "Runs under torchrun for DDP: torchrun --nproc-per-node N -m radsim.flows.torchrun --shards ... --out ...",
    )
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from radsim.data_contracts import settings
    from radsim.model.config import CLI_FIELDS, TrainConfig

    p.add_argument("--shards", required=True, metavar="SHARDS_DIR", help="shard folder written by 'radsim shard'")
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="model folder to create (or resume)")
    settings.add_arguments(p, TrainConfig, CLI_FIELDS, metavars={
        "epochs": "N", "image_size": "PX", "embedding_dim": "D", "batch_size": "B", "patience": "EPOCHS",
        "selection_min_patients": "N", "init_weights": "PATH", "max_minutes": "M", "threads": "N",
        "loader_workers": "N", "accumulate": "K", "max_steps": "N", "warmup": "EPOCHS"})
    p.add_argument("--resume", action="store_true", help="continue MODEL_DIR's run from its last.pt")
    p.add_argument("--flow", action="store_true", help="run as the Prefect flow train_embedding")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar and per-epoch lines")
    launch = p.add_argument_group(
        "distributed training (torchrun, DDP)",
        "Any of these runs the train_embedding flow, whose task starts torchrun and streams its log. Each rank "
        "takes --batch-size images per step; gloo on CPU, nccl on GPUs. One failed rank stops the job; last.pt "
        "(the last finished epoch) is kept for --resume.")
    layout = LaunchSpec()  # the launch layout's defaults are declared once, there
    launch.add_argument("--nproc-per-node", type=int, default=layout.nproc_per_node, metavar="N",
                        help="processes on this node, one per GPU (default: %(default)s, no torchrun)")
    launch.add_argument("--nnodes", type=int, default=layout.nnodes, metavar="M",
                        help="nodes in the job (default: %(default)s)")
    launch.add_argument("--node-rank", type=int, default=layout.node_rank, metavar="R",
                        help="this node's number 0..M-1, which tags its log lines; the c10d rendezvous assigns the "
                        "global ranks (default: 0)")
    launch.add_argument("--rdzv-endpoint", metavar="HOST:PORT",
                        help="c10d rendezvous on node 0, the same on every node (needed when --nnodes > 1)")
    launch.add_argument("--rdzv-id", default=layout.rdzv_id, metavar="JOB",
                        help="job id shared by the nodes (default: %(default)s)")


def options(args: argparse.Namespace) -> dict:
    """Keyword arguments for train_embedding_model: the TrainConfig fields given, plus resume and progress."""
    from radsim.data_contracts import settings
    from radsim.model.config import TrainConfig

    config = settings.from_arguments(TrainConfig, args)  # validated here: a bad value is one line, exit 2
    given = {name for name in TrainConfig.model_fields if getattr(args, name, None) is not None}
    return {**config.model_dump(include=given), "resume": args.resume, "progress": not args.no_progress}


def launch_spec(args: argparse.Namespace) -> dict | None:
    """The torchrun layout the flags ask for, or None for one plain process."""
    spec = {"nproc_per_node": args.nproc_per_node, "nnodes": args.nnodes, "node_rank": args.node_rank,
            "rdzv_endpoint": args.rdzv_endpoint, "rdzv_id": args.rdzv_id}
    if args.nproc_per_node == 1 and args.nnodes == 1:  # one plain process: no torchrun
        if args.node_rank or args.rdzv_endpoint:
            raise UsageError("--node-rank and --rdzv-endpoint need --nnodes > 1")
        return None
    LaunchSpec(**spec).check()
    return spec


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported (§13: spin-waiting threads)
    kw = options(args)
    launch = launch_spec(args)
    if launch is not None and int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        raise UsageError("--nproc-per-node/--nnodes inside a torchrun job: call radsim train without them there")
    if args.flow or launch is not None:
        from radsim.flows.train_embedding import train_embedding

        result = train_embedding(args.shards, args.out, options=kw, launch=launch)
        print(result["summary"])
    else:
        from radsim.model.train import train_embedding_model

        result = train_embedding_model(args.shards, args.out, **kw)
        if int(os.environ.get("RANK", "0")) == 0 and not os.environ.get("RADSIM_LAUNCHED"):
            print(result.summary())  # under the launcher, it prints the summary once
    sys.stdout.flush()
    return 0
