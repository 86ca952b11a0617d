"""`radsim train`: shards -> a trained encoder in MODEL_DIR (model.pt, last.pt, model_card.json), DESIGN §8.

Under torchrun the same command trains with DDP:
    torchrun --nproc-per-node 2 -m radsim.model.train --shards SHARDS --out MODEL_DIR
"""
from __future__ import annotations

import argparse
import os
import sys

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


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported (§13: spin-waiting threads)
    from radsim.data_contracts import UsageError

    if args.max_minutes is not None and args.max_minutes <= 0:
        raise UsageError(f"--max-minutes must be positive (got {args.max_minutes})")
    kw = options(args)
    if args.flow:
        from radsim.flows.train_embedding import train_embedding

        result = train_embedding(args.shards, args.out, options=kw)
        print(result["summary"])
    else:
        from radsim.model.train import train_embedding_model

        result = train_embedding_model(args.shards, args.out, **kw)
        if int(os.environ.get("RANK", "0")) == 0:
            print(result.summary())
    sys.stdout.flush()
    return 0
