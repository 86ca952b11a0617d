"""`radsim publish`: embed every sharded image with a model and publish the table atomically (DESIGN §4, §12)."""
from __future__ import annotations

import argparse
import sys

from radsim.flows.task_runners import add_runner_arguments, runner_from_args

NAME = "publish"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        NAME,
        help="embed every image with a trained model and publish the embeddings table (Parquet)",
        description="Embed every image in SHARDS_DIR (labelled and unlabelled) with the model in MODEL_DIR and "
        "publish PUBLISHED_DIR/embeddings/<v>/part-*.parquet (embeddings contract: exam_key, "
        "image_index, model_version, split, view_position, embedding float32[D], positive_findings, no_finding, "
        "key_id) with a publish record in PUBLISHED_DIR/_manifests/<v>.json. Publication is atomic: the version is "
        "staged outside embeddings/, validated, then renamed (or swapped) into place, so readers never see a "
        "partial table. The version becomes the current one in PUBLISHED_DIR/versions.parquet (the version analysts "
        "read) unless --no-current. Shards made under another pseudonymisation key, vocabulary or image size are "
        "refused.",
    )
    p.add_argument("--model", required=True, metavar="MODEL_DIR", help="model folder (model.pt + model_card.json)")
    p.add_argument("--shards", required=True, metavar="SHARDS_DIR", help="shard folder with manifest.parquet")
    p.add_argument("--out", required=True, metavar="PUBLISHED_DIR", help="published folder (e.g. warehouse/published)")
    p.add_argument("--batch-size", type=int, default=256, metavar="N", help="images per forward pass (default: %(default)s)")
    p.add_argument("--device", help="auto (GPU when present), cpu or cuda[:N] (default: auto; cpu for the tasks "
                   "of --task-runner, so a split run computes like a local CPU run)")
    add_runner_arguments(p, "shard groups (of --shards-per-task shards)")
    p.add_argument("--workers", type=int, default=2, metavar="N",
                   help="task runner workers: threads, processes or local Dask workers (default: %(default)s)")
    p.add_argument("--shards-per-task", type=int, default=1, metavar="N",
                   help="shards embedded by one task with --task-runner; results are assembled in manifest "
                   "order and equal a local run's (default: %(default)s). Dask workers need MODEL_DIR and "
                   "SHARDS_DIR at the same path")
    p.add_argument("--no-current", action="store_true",
                   help="publish beside the current version without making this one current (to compare models)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from radsim.data_contracts import UsageError

    for name in ("batch_size", "workers", "shards_per_task"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(args, name)})")
    progress = not args.no_progress and sys.stderr.isatty()
    runner = runner_from_args(args)
    if runner:
        from radsim.flows.publish_embeddings import run_publish_embeddings
        from radsim.model.checkpoint import load_model
        from radsim.imaging.manifest import manifest_metadata
        from radsim.model.compatibility import check_compatible

        # a missing model or manifest, or shards that do not fit, are usage errors before any cluster starts
        check_compatible(load_model(args.model), manifest_metadata(args.shards), args.shards)
        out = run_publish_embeddings(args.model, args.shards, args.out, runner=runner, workers=args.workers,
                                     dask_address=args.dask_address, device=args.device or "cpu",
                                     batch_size=args.batch_size, shards_per_task=args.shards_per_task,
                                     progress=progress, make_current=not args.no_current)
        summary, record = out["summary"], out["record_path"]
    else:
        from radsim.model.publish import publish

        result = publish(args.model, args.shards, args.out, batch_size=args.batch_size, device=args.device or "auto",
                         progress=progress, make_current=not args.no_current)
        summary, record = result.summary(), result.record_path
    print(summary)
    print(f"  publish record: {record}")
    print(f"  read with: pandas.read_parquet('{args.out}/embeddings') (every version; "
          f"{args.out}/versions.parquet says which is current)")
    sys.stdout.flush()
    return 0
