"""`radsim key`: the pseudonymous key of a raw exam (or patient) id, under the site's secret."""
from __future__ import annotations

import argparse
import sys

NAME = "key"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        NAME,
        help="turn a raw exam id into its exam_key (reads RADSIM_ID_KEY, never prints it)",
        description="Print the exam_key (or with --patient the patient_key) that radsim's tables use for each raw "
        "id, hashed with the site secret in RADSIM_ID_KEY, and the key_id every table records, so a published "
        "row can be found from an exam you have in mind. The secret is read from the environment only and "
        "never printed. Ids come from the arguments, or one per line on stdin with '-'.",
    )
    p.add_argument("ids", nargs="+", metavar="ID", help="raw exam ids (accession numbers), or '-' to read stdin")
    p.add_argument("--patient", action="store_true", help="the ids are patient ids: print patient keys")
    p.add_argument("--demo-key", action="store_true", help="the public demo key (synthetic cohorts only)")
    p.add_argument("--key-only", action="store_true", help="print only the keys, one per line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from radsim.data_contracts import UsageError, keyer_from_env

    keyer = keyer_from_env(demo=args.demo_key)
    ids = [line.strip() for line in sys.stdin if line.strip()] if args.ids == ["-"] else list(args.ids)
    if any(not i for i in ids):
        raise UsageError("an id is empty")
    make = keyer.patient_key if args.patient else keyer.exam_key
    if not args.key_only:
        print(f"# key_id {keyer.key_id}; {'patient_key' if args.patient else 'exam_key'} per id")
    for raw in ids:
        print(make(raw) if args.key_only else f"{raw}\t{make(raw)}")
    sys.stdout.flush()
    return 0
