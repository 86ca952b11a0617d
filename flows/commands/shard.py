"""`radsim shard`: exams + labels → pseudonymised WebDataset shards (DESIGN §7)."""
from __future__ import annotations

import argparse
import sys

from radsim.flows.task_runners import add_runner_arguments, runner_from_args

NAME = "shard"


def register(sub: argparse._SubParsersAction) -> None:
    from radsim.data_contracts import settings
    from radsim.imaging.config import CLI_FIELDS, ShardOptions

    p = sub.add_parser(
        NAME,
        help="decode radiographs and write WebDataset shards with their labels",
        description="Decode each exam image (DICOM, PNG or JPEG), normalise it to a square 8-bit PNG and write "
        "pseudonymised WebDataset shards (shard-NNNNNN.tar), manifest.parquet, splits.parquet (sticky, by "
        "patient) in SHARDS_DIR, which holds only pseudonymised data. Refused images go to a restricted quarantine "
        "table (--quarantine; default SHARDS_DIR/../restricted/shard-quarantine.parquet), never into SHARDS_DIR. "
        "Runs are incremental: exams already sharded with the same image are skipped and new exams go to new shards. "
        "Needs RADSIM_ID_KEY unless --demo-key.",
    )
    p.add_argument(
        "--exams",
        required=True,
        metavar="EXAMS",
        help="exams table (CSV, Parquet or JSONL: exam_id, patient_id, image_uri[, image_index, view_position]); "
        "relative image paths are relative to its folder",
    )
    p.add_argument("--labels", metavar="LABELS",
                   help="labels table in the labels contract (radsim's, or NIH/CheXpert converted); "
                   "exams without a labels row are sharded as unlabelled")
    p.add_argument("--out", required=True, metavar="SHARDS_DIR",
                   help="output folder for shards and manifests: a path or an fsspec URI (s3://…, gs://…; written "
                   "through a local mirror that is pushed back when the run succeeds)")
    p.add_argument("--quarantine", metavar="PATH",
                   help="restricted quarantine table for refused images: it names raw exam ids and files, so it stays "
                   "out of SHARDS_DIR (default: SHARDS_DIR/../restricted/shard-quarantine.parquet, or "
                   "./restricted/shard-quarantine.parquet when SHARDS_DIR is a URI)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="decoding processes (default: %(default)s)")
    p.add_argument("--vocabulary", metavar="YAML", help="site vocabulary file extending the default findings")
    settings.add_arguments(p, ShardOptions, CLI_FIELDS, metavars={
        "image_size": "PX", "split_fractions": "TRAIN,VAL,TEST", "maxcount": "N", "compact_after": "N",
        "batch_size": "N"})
    p.add_argument("--flow", action="store_true", help="run as the Prefect flow build_shards (tasks on a process pool)")
    add_runner_arguments(p, "decode batches")
    p.add_argument(
        "--demo-key", action="store_true", help="use the public demo pseudonymisation key (synthetic data only)"
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from radsim.data_contracts import UsageError, keyer_from_env, load_vocabulary, settings
    from radsim.imaging.config import ShardOptions
    from radsim.model.embed_config import EmbedConfig

    settings.check_value(EmbedConfig, "workers", args.workers, "command line")  # the task runner's one declaration
    options = settings.from_arguments(ShardOptions, args)  # validated here: a bad value is one line, exit 2
    keyer = keyer_from_env(demo=args.demo_key)  # exits 2 without RADSIM_ID_KEY
    runner = runner_from_args(args)
    from pathlib import Path

    from radsim.imaging.shards import QUARANTINE_FILE, default_quarantine_path
    from radsim.warehouse.storage import is_remote, open_folder

    quarantine = Path(args.quarantine) if args.quarantine else (
        Path("restricted") / QUARANTINE_FILE if is_remote(args.out) else default_quarantine_path(args.out))
    if is_remote(str(quarantine)):
        raise UsageError("--quarantine must be a local path: it is a restricted table")

    with open_folder(args.out) as out:  # a remote SHARDS_DIR is pushed back only after a successful run
        if args.flow or runner:
            from radsim.flows.build_shards import run_build_shards

            runner = runner or ("processes" if args.workers > 1 else "threads")
            result = run_build_shards(args.exams, args.labels, str(out), runner=runner,
                                      dask_address=args.dask_address, workers=args.workers, options=options,
                                      demo_key=args.demo_key, vocabulary=args.vocabulary, quarantine=str(quarantine),
                                      progress=not args.no_progress)
            print(result["summary"])
        else:
            from radsim.imaging.shards import ShardSite, write_shards

            site = ShardSite(load_vocabulary(args.vocabulary), quarantine_path=quarantine)
            summary = write_shards(args.exams, args.labels, out, keyer=keyer, site=site, workers=args.workers,
                                   options=options, progress=not args.no_progress)
            print(summary.summary())
    sys.stdout.flush()
    return 0
