"""`radsim evaluate`: retrieval, clustering and normal-vs-abnormal metrics of a published version (DESIGN §9)."""
from __future__ import annotations

import argparse
import sys

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
    p.add_argument("--embeddings", required=True, metavar="PUBLISHED_DIR", help="published folder (radsim publish --out)")
    p.add_argument("--out", required=True, metavar="REPORT_DIR", help="report folder")
    p.add_argument("--model-version", metavar="V", help="version to evaluate (default: the newest publish record)")
    p.add_argument("--truth", metavar="TRUTH",
                   help="labels-contract table keyed by raw exam_id (e.g. the synthetic truth.parquet or a validated "
                   "subset), hashed through the key; used instead of the published report-derived labels")
    p.add_argument("--demo-key", action="store_true", help="hash --truth ids with the public demo key (synthetic data only)")
    p.add_argument("--shards", metavar="SHARDS_DIR", help="shard folder, to draw the query gallery (skipped without it)")
    p.add_argument("--split", default="test", choices=("test", "val", "train", "all"),
                   help="split to evaluate (default: %(default)s)")
    p.add_argument("--max-queries", type=int, default=5000, metavar="N",
                   help="retrieval queries at most (seeded sample; the gallery is always every exam) (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random baseline, k-means and samples (default: %(default)s)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from radsim.data_contracts import UsageError, keyer_from_env
    from radsim.evaluation.report import run_evaluation

    if args.max_queries < 1:
        raise UsageError(f"--max-queries must be at least 1 (got {args.max_queries})")
    keyer = keyer_from_env(demo=args.demo_key) if args.truth else None
    result = run_evaluation(args.embeddings, args.out, model_version=args.model_version, truth=args.truth, keyer=keyer,
                            shards=args.shards, split=args.split, seed=args.seed, max_queries=args.max_queries,
                            plots=not args.no_plots)
    config = {k: (str(v) if v is not None else None) for k, v in vars(args).items() if k not in ("func",)}
    config["model_version"] = result.model_version
    (Path(args.out) / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(result.summary())
    sys.stdout.flush()
    return 0
