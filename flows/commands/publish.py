"""`radsim publish`: embed every sharded image with a model and publish the table atomically (DESIGN §4, §12)."""
from __future__ import annotations

import argparse
import sys

NAME = "publish"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        NAME,
        help="embed every image with a trained model and publish the embeddings table (Parquet)",
        description="Embed every image in SHARDS_DIR (labelled and unlabelled) with the model in MODEL_DIR and "
        "publish PUBLISHED_DIR/embeddings/model_version=<v>/part-*.parquet (embeddings contract: exam_key, "
        "image_index, model_version, split, view_position, embedding float32[D], positive_findings, no_finding, "
        "key_id) with a publish record in PUBLISHED_DIR/_manifests/<v>.json. Publication is atomic: the version is "
        "staged outside embeddings/, validated, then renamed (or swapped) into place, so readers never see a "
        "partial table. Shards made under another pseudonymisation key, vocabulary or image size are refused.",
    )
    p.add_argument("--model", required=True, metavar="MODEL_DIR", help="model folder (model.pt + model_card.json)")
    p.add_argument("--shards", required=True, metavar="SHARDS_DIR", help="shard folder with manifest.parquet")
    p.add_argument("--out", required=True, metavar="PUBLISHED_DIR", help="published folder (e.g. warehouse/published)")
    p.add_argument("--batch-size", type=int, default=256, metavar="N", help="images per forward pass (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto (GPU when present), cpu or cuda[:N] (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from radsim.model.publish import publish

    result = publish(args.model, args.shards, args.out, batch_size=args.batch_size, device=args.device,
                     progress=not args.no_progress and sys.stderr.isatty())
    print(result.summary())
    print(f"  publish record: {result.record_path}")
    print(f"  read with: polars.read_parquet('{args.out}/embeddings/**/*.parquet', hive_partitioning=True)")
    sys.stdout.flush()
    return 0
