"""`radsim train`: shards -> a trained encoder in MODEL_DIR (model.pt, last.pt, model_card.json), DESIGN §8.

`--nproc-per-node N` (and `--nnodes`) trains with DDP: the Prefect flow `train_embedding` runs
torchrun in a task that owns the process group and streams every rank's lines to the run log
(radsim.model.launch). Without a launcher flag, torchrun can also be called directly:
    torchrun --nproc-per-node 2 -m radsim.model.train --shards SHARDS --out MODEL_DIR
"""
from __future__ import annotations

import argparse
import os
import sys

from radsim.data_contracts.errors import UsageError

NAME = "train"
LOSSES = ("ml2", "ml2plus", "triplet", "ms")
BACKBONES = ("small", "resnet18", "resnet50", "densenet121")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        NAME,
        help="train the metric-learning encoder on shards",
        description="Train an image encoder with a multi-label metric-learning loss on the labelled frontal "
        "films of SHARDS_DIR's train split; validate P@10 and normal-vs-abnormal AUC on the val split every "
        "epoch (early stopping on P@10). Writes MODEL_DIR/model.pt (best), last.pt (resume state) and "
        "model_card.json. Runs under torchrun for DDP: "
        "torchrun --nproc-per-node N -m radsim.model.train --shards ... --out ...",
    )
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shards", required=True, metavar="SHARDS_DIR", help="shard folder written by 'radsim shard'")
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="model folder to create (or resume)")
    p.add_argument("--loss", choices=LOSSES, default="ml2",
                   help="ml2: the paper's multi-label loss; ml2plus: radsim's noise-robust variant; "
                   "triplet, ms: baselines (default: %(default)s)")
    p.add_argument("--backbone", choices=BACKBONES, default="small",
                   help="encoder; small trains at hundreds of images/s on CPU (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=None, metavar="N", help="maximum epochs (default: 40)")
    p.add_argument("--image-size", type=int, default=None, metavar="PX",
                   help="training size; default: the shards' size (another value resizes on the fly)")
    p.add_argument("--embedding-dim", type=int, default=128, metavar="D", help="embedding size (default: %(default)s)")
    p.add_argument("--device", default="auto",
                   help="auto (CUDA with bf16 + channels_last when present, else CPU fp32), cpu, cuda[:N] "
                   "(default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64, metavar="B", help="images per step and process (default: %(default)s)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate of AdamW (default: 2e-3)")
    p.add_argument("--weight-decay", type=float, default=None, help="AdamW weight decay (default: 1e-4)")
    p.add_argument("--patience", type=int, default=None, metavar="EPOCHS",
                   help="stop after this many epochs without a better validation P@10 (default: 10; 0 = never)")
    p.add_argument("--seed", type=int, default=0, help="seed for weights and data order (default: %(default)s)")
    p.add_argument("--init-weights", metavar="PATH",
                   help="start from a local state dict with torchvision key names, or a radsim model folder/checkpoint")
    p.add_argument("--resume", action="store_true", help="continue MODEL_DIR's run from its last.pt")
    p.add_argument("--max-minutes", type=float, default=None, metavar="M",
                   help="stop training after M minutes (the cut epoch is validated and saved; --resume continues it)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch CPU threads per process (default: the cores per process, 1 on a loaded machine)")
    p.add_argument("--data", choices=("auto", "memory", "stream"), default="auto",
                   help="decode the train split into memory once, or stream it from the shards (default: auto)")
    p.add_argument("--accumulate", type=int, default=1, metavar="K",
                   help="sum gradients over K batches per step (1 process with K=N takes the steps of N DDP ranks)")
    p.add_argument("--max-steps", type=int, default=None, metavar="N", help="stop after N optimiser steps (smoke tests)")
    p.add_argument("--flow", action="store_true", help="run as the Prefect flow train_embedding")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar and per-epoch lines")
    launch = p.add_argument_group(
        "distributed training (torchrun, DDP)",
        "Any of these runs the train_embedding flow, whose task starts torchrun and streams its log. Each rank "
        "takes --batch-size images per step; gloo on CPU, nccl on GPUs. One failed rank stops the job; last.pt "
        "(the last finished epoch) is kept for --resume.")
    launch.add_argument("--nproc-per-node", type=int, default=1, metavar="N",
                        help="processes on this node, one per GPU (default: %(default)s, no torchrun)")
    launch.add_argument("--nnodes", type=int, default=1, metavar="M", help="nodes in the job (default: %(default)s)")
    launch.add_argument("--node-rank", type=int, default=0, metavar="R",
                        help="this node's number 0..M-1, which tags its log lines; the c10d rendezvous assigns the "
                        "global ranks (default: 0)")
    launch.add_argument("--rdzv-endpoint", metavar="HOST:PORT",
                        help="c10d rendezvous on node 0, the same on every node (needed when --nnodes > 1)")
    launch.add_argument("--rdzv-id", default="radsim-train", metavar="JOB",
                        help="job id shared by the nodes (default: %(default)s)")


def options(args: argparse.Namespace) -> dict:
    """Keyword arguments for train_embedding_model; unset flags keep its defaults."""
    kw = {"loss": args.loss, "backbone": args.backbone, "image_size": args.image_size,
          "embedding_dim": args.embedding_dim, "batch_size": args.batch_size, "seed": args.seed,
          "device": args.device, "init_weights": args.init_weights, "resume": args.resume,
          "max_minutes": args.max_minutes, "progress": not args.no_progress, "num_threads": args.threads,
          "data": args.data, "accumulate": args.accumulate, "max_steps": args.max_steps}
    for name in ("epochs", "lr", "weight_decay"):
        if getattr(args, name) is not None:
            kw[name] = getattr(args, name)
    if args.patience is not None:
        kw["patience"] = args.patience or None
    return kw


# train_embedding_model keyword → this command's flag; the inverse of `options` (torchrun re-parses it).
_FLAG_FOR_OPTION = {"loss": "--loss", "backbone": "--backbone", "image_size": "--image-size",
                    "embedding_dim": "--embedding-dim", "batch_size": "--batch-size", "seed": "--seed",
                    "device": "--device", "init_weights": "--init-weights", "max_minutes": "--max-minutes",
                    "num_threads": "--threads", "data": "--data", "accumulate": "--accumulate",
                    "max_steps": "--max-steps", "epochs": "--epochs", "lr": "--lr", "weight_decay": "--weight-decay",
                    "patience": "--patience"}


def options_to_argv(shards: str, out: str, kw: dict) -> list[str]:
    """`radsim train` arguments that make `options(parse(argv)) == kw`: what each torchrun rank runs."""
    unknown = set(kw) - set(_FLAG_FOR_OPTION) - {"resume", "progress"}
    if unknown:
        raise UsageError(f"training options {sorted(unknown)} cannot be passed to torchrun ranks")
    argv = ["--shards", str(shards), "--out", str(out)]
    for name, flag in _FLAG_FOR_OPTION.items():
        if name == "patience" and name in kw:
            argv += [flag, str(kw[name] or 0)]  # None (never stop early) is 0 on the command line
        elif kw.get(name) is not None:
            argv += [flag, str(kw[name])]
    if kw.get("resume"):
        argv.append("--resume")
    if not kw.get("progress", True):
        argv.append("--no-progress")
    return argv


def launch_spec(args: argparse.Namespace) -> dict | None:
    """The torchrun layout the flags ask for, or None for one plain process."""
    spec = {"nproc_per_node": args.nproc_per_node, "nnodes": args.nnodes, "node_rank": args.node_rank,
            "rdzv_endpoint": args.rdzv_endpoint, "rdzv_id": args.rdzv_id}
    if args.nproc_per_node == 1 and args.nnodes == 1:
        if args.node_rank or args.rdzv_endpoint:
            raise UsageError("--node-rank and --rdzv-endpoint need --nnodes > 1")
        return None
    from radsim.model.launch import LaunchSpec

    LaunchSpec(**spec).check()
    return spec


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported (§13: spin-waiting threads)
    if args.max_minutes is not None and args.max_minutes <= 0:
        raise UsageError(f"--max-minutes must be positive (got {args.max_minutes})")
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
