"""`radsim label-score`: labels against a gold table or a filled-in audit, with bootstrap intervals."""
from __future__ import annotations

import argparse

from radsim.nlp.agreement import DEFAULT_BOOTSTRAP, UNCERTAIN_POLICIES
from radsim.nlp.input_files import ID

NAME = "label-score"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        NAME,
        help="score labels against a gold table or a filled-in label-audit CSV (P, R, F1 with 95%% intervals)",
        description="Per-finding precision, recall and F1 with 95%% bootstrap intervals (resampling exams), macro "
        "and micro averages, and a present/negated/uncertain/not-mentioned confusion table. A finding counts as "
        "predicted present when its value is 1; findings the gold marks uncertain are left out of that exam's score "
        "(--uncertain). GOLD is a table keyed by exam_id (CSV, Parquet or JSON lines, values 1/0/-1/empty) whose "
        "finding columns are named as radsim names them (pleural_effusion) or as the CheXpert labeler does (Pleural "
        "Effusion), in any case; the output says which columns it matched. GOLD may instead be the CSV from "
        "'radsim label-audit' with its verdicts filled in, whose values are weighted by their stratum so the "
        "estimate describes the whole LABELS table (a stratum judged whole is exact). Writes agreement.json and "
        "agreement.md in --out.",
    )
    p.add_argument("labels", metavar="LABELS", help="labels written by radsim label (.parquet, or the .csv in "
                   "the CheXpert layout)")
    p.add_argument("--gold", required=True, metavar="GOLD", help="gold labels table, or a filled-in audit CSV")
    p.add_argument("--id-column", default=ID, metavar="NAME",
                   help="GOLD's exam id column, matched in any case (default: %(default)s)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for agreement.json and agreement.md")
    p.add_argument("--findings", metavar="A,B", help="comma-separated findings to score (default: all in both)")
    p.add_argument("--uncertain", choices=UNCERTAIN_POLICIES, default=UNCERTAIN_POLICIES[0],
                   help="how a gold-uncertain finding counts (default: %(default)s, left out of that exam's score)")
    p.add_argument("--bootstrap", type=int, default=DEFAULT_BOOTSTRAP, metavar="N",
                   help="bootstrap replicates (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from radsim.data_contracts import UsageError
    from radsim.nlp.scoring import score_label_files

    if args.bootstrap < 1:
        raise UsageError(f"--bootstrap must be at least 1 (got {args.bootstrap})")
    findings = [f.strip() for f in args.findings.split(",") if f.strip()] if args.findings else None
    report, paths = score_label_files(args.labels, args.gold, args.out, findings=findings, uncertain=args.uncertain,
                                      bootstrap=args.bootstrap, seed=args.seed, gold_id_column=args.id_column)
    print("\n".join(f"note: {n}" for n in report.notes))
    print("\n".join(report.lines()))
    print("wrote " + " and ".join(str(p) for p in paths))
    return 0
