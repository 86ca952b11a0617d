"""`radsim evaluate`: retrieval, clustering and normal-vs-abnormal metrics of a published version (DESIGN §9)."""
from __future__ import annotations

import argparse
import sys

from radsim.data_contracts import settings
from radsim.evaluation.config import CLI_FIELDS, EvalConfig

NAME = "evaluate"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        NAME,
        help="evaluate published embeddings: P@k, mAP@R, NDCG, clustering, normal AUC, with chance levels",
        description="Evaluate a published model version on the test split: P@1/5/10, mAP@R, NDCG@10, per-finding "
        "P@10, k-means NMI and purity, and the normal-vs-abnormal kNN AUC, overall and by view (PA/AP/LATERAL), each "
        "with its chance value (random ranking) and random value (random embeddings). Writes evaluation.json "
        "(evaluation contract), report.md and PNG plots (2-D map, P@k curves, per-finding bars, query gallery) "
        "in REPORT_DIR.",
    )
    p.add_argument(
        "--embeddings", required=True, metavar="PUBLISHED_DIR", help="published folder (radsim publish --out)"
    )
    p.add_argument("--out", required=True, metavar="REPORT_DIR", help="report folder")
    p.add_argument("--model-version", metavar="V", help="version to evaluate (default: the newest publish record)")
    p.add_argument("--truth", metavar="TRUTH",
                   help="labels-contract table keyed by raw exam_id (e.g. the synthetic truth.parquet or a validated "
                   "subset), hashed through the key; used instead of the published report-derived labels")
    p.add_argument(
        "--demo-key", action="store_true", help="hash --truth ids with the public demo key (synthetic data only)"
    )
    p.add_argument(
        "--shards", metavar="SHARDS_DIR", help="shard folder, to draw the query gallery (skipped without it)"
    )
    settings.add_arguments(p, EvalConfig, CLI_FIELDS, metavars={"max_queries": "N"})
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from radsim.data_contracts import keyer_from_env
    from radsim.data_contracts.atomic import write_json_atomic
    from radsim.evaluation.report import EvalInputs, run_evaluation
    from radsim.warehouse.layout import CONFIG_FILE

    config = settings.from_arguments(EvalConfig, args)
    keyer = keyer_from_env(demo=args.demo_key) if args.truth else None
    result = run_evaluation(args.embeddings, args.out, config,
                            inputs=EvalInputs(args.model_version, args.truth, keyer, args.shards))
    inputs = {"embeddings": args.embeddings, "out": args.out, "truth": args.truth, "shards": args.shards,
              "demo_key": args.demo_key}
    doc = {**{k: (str(v) if v is not None else None) for k, v in inputs.items()}, **config.model_dump(),
           "model_version": result.model_version}
    write_json_atomic(Path(args.out) / CONFIG_FILE, doc)
    print(result.summary())
    sys.stdout.flush()
    return 0
