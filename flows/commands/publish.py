"""`radsim publish`: embed every sharded image with a model and publish the table atomically (DESIGN §4, §12)."""
from __future__ import annotations

import argparse
import sys

from radsim.data_contracts import settings
from radsim.flows.task_runners import add_runner_arguments, runner_from_args
from radsim.model.embed_config import CLI_FIELDS, EmbedConfig

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
        "read) only when the promotion gates pass the model (validation P@10 and normal-vs-abnormal AUC above chance "
        "and the untrained encoder, no collapse, enough validation patients, not worse than the current model), or "
        "with --force-promote (recorded as forced); otherwise it is published beside the current version and the "
        "command says why. The decision is written into the model card and versions.parquet either way. Shards made "
        "under another pseudonymisation key, vocabulary or image size are refused.",
    )
    p.add_argument("--model", required=True, metavar="MODEL_DIR", help="model folder (model.pt + model_card.json)")
    p.add_argument("--shards", required=True, metavar="SHARDS_DIR", help="shard folder with manifest.parquet")
    p.add_argument("--out", required=True, metavar="PUBLISHED_DIR", help="published folder (e.g. warehouse/published)")
    add_runner_arguments(p, "shard groups (of --shards-per-task shards)")
    settings.add_arguments(p, EmbedConfig, CLI_FIELDS, metavars={"batch_size": "N", "workers": "N",
                                                                 "shards_per_task": "N"})
    p.add_argument("--force-promote", action="store_true",
                   help="make the version current even if the gates do not promote the model (recorded as forced)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = settings.from_arguments(EmbedConfig, args)
    progress = not args.no_progress and sys.stderr.isatty()
    runner = runner_from_args(args)
    force = "--force-promote" if args.force_promote else None
    if runner:
        from radsim.flows.publish_embeddings import run_publish_embeddings
        from radsim.imaging.manifest import manifest_metadata
        from radsim.model.checkpoint import load_model
        from radsim.model.compatibility import check_compatible

        # a missing model or manifest, or shards that do not fit, are usage errors before any cluster starts
        check_compatible(load_model(args.model), manifest_metadata(args.shards), args.shards)
        out = run_publish_embeddings(args.model, args.shards, args.out, config, runner=runner,
                                     dask_address=args.dask_address, progress=progress, force=force)
        summary, record = out["summary"], out["record_path"]
    else:
        from radsim.model.publish import publish

        result, choice = publish(args.model, args.shards, args.out, batch_size=config.batch_size,
                                 device=config.device_for(mapped=False), progress=progress,
                                 make_current=config.current, force=force)
        summary, record = result.summary() + "\n" + choice.summary(), result.record_path
    print(summary)
    print(f"  publish record: {record}")
    print(f"  read with: pandas.read_parquet('{args.out}/embeddings') (every version; "
          f"{args.out}/versions.parquet says which is current)")
    sys.stdout.flush()
    return 0
