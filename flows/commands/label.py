"""`radsim label`: report text → CheXpert-style labels per finding, with evidence (DESIGN §4, §6)."""
from __future__ import annotations

import argparse
import sys

from radsim.data_contracts import settings
from radsim.flows.task_runners import add_runner_arguments, runner_from_args
from radsim.nlp.config import CLI_FIELDS, LabelConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "label",
        help="extract finding labels (1/0/-1/null) from free-text radiology reports",
        description="Label chest X-ray reports with one value per finding: 1 present, 0 negated or resolved, "
        "-1 uncertain, null not mentioned (CheXpert convention), with the evidence sentence, trigger and rule. "
        "LABELS.parquet is the labels contract; LABELS.csv is the CheXpert labeler's layout (exam_id, then one "
        "column per finding named as CheXpert names it, 1/0/-1/blank) with the evidence in LABELS.evidence.csv. "
        "Records that cannot be labelled (empty, undecodable, duplicate, a malformed CSV record, a JSON line that "
        "is not JSON, an unreadable file) go to LABELS.quarantine.* with their reason and line. Memory stays "
        "bounded whatever the input size.",
    )
    p.add_argument("input", metavar="INPUT",
                   help="CSV, TSV, Parquet or JSON lines with exam_id and report_text columns (any case; see "
                   "--id-column, --text-column, --delimiter; an exams table with image_index is collapsed to one "
                   "report per exam), or a folder of *.txt files (stem = exam_id)")
    p.add_argument(
        "--out",
        metavar="LABELS.parquet|LABELS.csv",
        help="output labels: .parquet (labels contract) or .csv (CheXpert layout); required unless --explain",
    )
    settings.add_arguments(p, LabelConfig, CLI_FIELDS, metavars={
        "vocabulary": "FILE", "workers": "N", "batch_size": "N", "certainty_threshold": "GRADE", "delimiter": "CHAR",
        "id_column": "NAME", "text_column": "NAME"})
    p.add_argument("--explain", metavar="EXAM_ID", help="label only this exam and print its evidence per finding")
    p.add_argument("--flow", action="store_true", help="run through the Prefect flow label_reports (ephemeral mode)")
    add_runner_arguments(p, "exam batches (of --batch-size reports)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from radsim.data_contracts.errors import UsageError
    from radsim.data_contracts.vocabulary import load_vocabulary

    config = settings.from_arguments(LabelConfig, args)
    vocabulary = load_vocabulary(config.vocabulary, replace=config.replace_vocabulary)

    if args.explain is not None:
        from radsim.nlp.labeler import BadReport, Labeler
        from radsim.nlp.runner import explain, find_report

        text = find_report(args.input, args.explain, config.input_format())
        try:
            lines = explain(Labeler(vocabulary, certainty_threshold=config.certainty_threshold), text)
        except BadReport as exc:
            print(f"{args.explain}: would be quarantined ({exc.reason}): {exc}")
            return 0
        print(f"exam {args.explain} ({vocabulary.name} {vocabulary.version}):")
        print("\n".join(f"  {line}" for line in lines))
        return 0

    if not args.out:
        raise UsageError("--out LABELS.parquet (or LABELS.csv) is required (or use --explain EXAM_ID)")
    runner = runner_from_args(args)
    if args.flow or runner:
        from radsim.flows.label_reports import run_label_reports

        summary = run_label_reports(args.input, args.out, config, runner=runner or "threads",
                                    dask_address=args.dask_address, progress=not args.no_progress)
    else:
        from radsim.nlp.runner import label_file

        summary = label_file(args.input, args.out, config, vocabulary=vocabulary, progress=not args.no_progress)
    print("\n".join(summary.lines()))
    sys.stdout.flush()
    return 0
