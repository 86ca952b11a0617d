"""`radsim synth`: write the synthetic cohort (DESIGN §10) to a folder.

Its cohort options derive from `radsim.synthetic.config.SynthConfig` (default, help and bounds).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Annotated, Any

from radsim.data_contracts import settings
from radsim.synthetic.config import CLI_FIELDS, SynthConfig

NAME = "synth"
# checked as they are parsed, so a rate out of [0, 1] is argparse's usage error
PARSE_CHECKED = ("omission_rate", "overcall_rate")


def _checked(name: str) -> Callable[[str], Any]:
    """An argparse type that applies SynthConfig's type and bounds for `name`."""
    import pydantic

    field = SynthConfig.model_fields[name]
    adapter = pydantic.TypeAdapter(Annotated[field.annotation, *field.metadata])

    def parse(text: str) -> Any:
        try:
            return adapter.validate_python(text)
        except pydantic.ValidationError as exc:
            raise argparse.ArgumentTypeError(f"{exc.errors()[0]['msg']}, got {text}") from None

    return parse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        NAME,
        help="write a synthetic chest X-ray cohort (DICOM + reports + truth tables)",
        description="Write a deterministic synthetic cohort: OUT/inbox/<exam_id>/{report.txt,0.dcm}, "
        "OUT/exams.parquet, OUT/truth.parquet (what each image shows) and OUT/report_truth.parquet "
        "(what each report asserts). The same seed gives the same cohort.",
    )
    exams = SynthConfig.model_fields["exams"]
    p.add_argument("--exams", type=int, required=True, metavar="N", help=exams.description)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (the inbox goes in DIR/inbox)")
    settings.add_arguments(p, SynthConfig, include=CLI_FIELDS,
                           metavars={"omission_rate": "P", "overcall_rate": "P", "image_size": "PX"})
    for action in p._actions:
        if action.dest in PARSE_CHECKED:
            action.type = _checked(action.dest)
    p.add_argument("--overwrite", action="store_true", help="replace an existing cohort in --out")
    p.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from radsim.synthetic import generate_cohort

    config = settings.from_arguments(SynthConfig, args)
    summary = generate_cohort(args.out, config, progress=not args.no_progress, overwrite=args.overwrite)
    print("\n".join(summary.lines()), file=sys.stdout)
    return 0
