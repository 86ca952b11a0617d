"""`radsim demo`: run the whole pipeline on a fresh synthetic cohort."""
from __future__ import annotations

import argparse
import sys

from radsim.data_contracts import settings
from radsim.flows.commands.summary import print_counts_and_notes
from radsim.flows.demo_config import CLI_FIELDS, DemoConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the pipeline end to end on a fresh synthetic cohort",
        description="Generate a synthetic chest X-ray cohort (images as DICOM, free-text reports, bad records "
        "included) and run every pipeline stage on it through Prefect in ephemeral local mode. "
        "Uses the public demo pseudonymisation key; never use demo mode on patient data. "
        "The output folder is deleted and rebuilt on each run.",
    )
    settings.add_arguments(p, DemoConfig, CLI_FIELDS, metavars={"out": "DIR", "exams": "N", "seed": "N"})
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = settings.from_arguments(DemoConfig, args)  # a bad value is one line naming the option, exit 2
    from radsim.flows.cli import require_extras

    require_extras("imaging", "training", "evaluation")
    from radsim.flows.demo import demo_flow
    from radsim.flows.pipeline import ephemeral_run

    with ephemeral_run():
        result = demo_flow(out=config.out, n_exams=config.exams, seed=config.seed, progress=not args.no_progress)
    print(f"\nradsim demo finished in {result.seconds:.0f} s. Output under {result.layout.root.resolve()}:")
    width = max(len(k) for k in result.outputs) if result.outputs else 0
    for name, path in result.outputs.items():
        print(f"  {name:<{width}}  {path}")
    if result.headline:
        print("Test split, against the image truth (value, then chance and random-embedding levels):")
        for line in result.headline:
            print(f"  {line}")
    print_counts_and_notes(result, "Counts (rows in = out + quarantined + skipped):")
    sys.stdout.flush()
    return 0
