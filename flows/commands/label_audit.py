"""`radsim label-audit`: a stratified sample of a labels table for a person to judge (site audit)."""
from __future__ import annotations

import argparse

from radsim.nlp.audit import DEFAULT_PER_STRATUM

NAME = "label-audit"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        NAME,
        help="export a stratified sample of labels, with evidence, for a person to judge (site audit)",
        description="Sample up to N exams per finding and predicted status (present, uncertain, negated; with "
        "--reports also not mentioned, and no_finding) from a labels table, and write one CSV row per sampled report "
        "with all the strata it was drawn for together: the values to judge ('to_judge'), their evidence sentence, "
        "certainty, trigger and rule, the report, and blank 'verdict', 'corrections' and 'unsure' columns. A reviewer "
        "writes 'correct' when every value to judge is right, or lists the wrong ones in 'corrections' "
        "(pneumothorax=1; edema=  -- 1 present, 0 negated, -1 uncertain, empty for not mentioned) and those they "
        "cannot judge in 'unsure'; 'radsim label-score LABELS --gold AUDIT.csv' then estimates precision, recall and "
        "F1 for the whole table. The CSV quotes reports and raw exam ids: keep it with the restricted tables.",
    )
    p.add_argument("labels", metavar="LABELS", help="labels table written by radsim label (Parquet)")
    p.add_argument("--out", required=True, metavar="AUDIT.csv", help="CSV to write")
    p.add_argument("--per-stratum", type=int, default=DEFAULT_PER_STRATUM, metavar="N",
                   help="exams sampled per finding and predicted status (default: %(default)s)")
    p.add_argument("--reports", metavar="INPUT",
                   help="the labelled reports (any radsim label INPUT): adds the whole report text to each row and "
                   "samples the not-mentioned strata and no_finding too, so missed findings are measured")
    p.add_argument("--findings", metavar="A,B", help="comma-separated findings to audit (default: all)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from radsim.nlp.audit import export_audit

    findings = [f.strip() for f in args.findings.split(",") if f.strip()] if args.findings else None
    summary = export_audit(args.labels, args.out, per_stratum=args.per_stratum, seed=args.seed,
                           reports_input=args.reports, findings=findings)
    print("\n".join(summary.lines()))
    return 0
