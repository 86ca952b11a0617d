"""`radsim synth`: write the synthetic cohort (DESIGN §10) to a folder."""
from __future__ import annotations

import argparse
import sys

NAME = "synth"


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        NAME,
        help="write a synthetic chest X-ray cohort (DICOM + reports + truth tables)",
        description="Write a deterministic synthetic cohort: OUT/inbox/<exam_id>/{report.txt,0.dcm}, "
        "OUT/exams.parquet, OUT/truth.parquet (what each image shows) and OUT/report_truth.parquet "
        "(what each report asserts). The same seed gives the same cohort.",
    )
    p.add_argument("--exams", type=int, required=True, metavar="N", help="number of exams to generate (>= 1)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (the inbox goes in DIR/inbox)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--omission-rate", type=_rate, default=0.0, metavar="P",
                   help="probability that a finding shown in the image is left out of the report (default 0)")
    p.add_argument("--overcall-rate", type=_rate, default=0.0, metavar="P",
                   help="probability that a report calls one absent finding present (default 0)")
    p.add_argument("--bad", action="store_true",
                   help="also add bad records (corrupt DICOM, empty report, duplicate id, non-chest) listed in bad_exams.csv")
    p.add_argument("--preview", action="store_true", help="write preview.png, a contact sheet of images per finding")
    p.add_argument("--image-size", type=int, default=512, metavar="PX", help="image side in pixels (64-4096, default 512)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing cohort in --out")
    p.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from radsim.data_contracts import UsageError
    from radsim.synthetic import generate_cohort

    if args.exams < 1:
        raise UsageError(f"--exams must be at least 1, got {args.exams}")
    summary = generate_cohort(
        args.out, args.exams, seed=args.seed, omission_rate=args.omission_rate, overcall_rate=args.overcall_rate,
        bad=args.bad, preview=args.preview, image_size=args.image_size, progress=not args.no_progress,
        overwrite=args.overwrite,
    )
    print("\n".join(summary.lines()), file=sys.stdout)
    return 0
