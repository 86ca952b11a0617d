"""`radsim prune`: remove old published versions and their index caches, never the current one."""
from __future__ import annotations

import argparse
import sys

NAME = "prune"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        NAME,
        help="remove old published versions (never the current one)",
        description="Keep the N versions first published last, and the current one, in PUBLISHED_DIR (or remove "
        "the versions named with --remove); remove the others with their publish records and similar-exam index "
        "caches. The prune is journaled under the "
        "publish lock: a prune cut short (even by SIGKILL) is finished by the next publish or prune, and readers "
        "of a kept version are never disturbed. In a scheduled pipeline, set [publish] keep_versions instead.",
    )
    p.add_argument("published", metavar="PUBLISHED_DIR", help="published folder (e.g. warehouse/published)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--keep", type=int, metavar="N",
                      help="versions to keep, newest first by first publication (at least 1); the current one is "
                      "always kept on top")
    what.add_argument("--remove", action="append", metavar="VERSION",
                      help="remove this version (repeatable); the current version is refused")
    p.add_argument("--index-dir", metavar="DIR", help="similar-exam index cache (default: PUBLISHED_DIR/../index)")
    p.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from radsim.warehouse.published import prune_versions

    result = prune_versions(args.published, args.keep, remove=args.remove or (), index_dir=args.index_dir,
                            dry_run=args.dry_run)
    print(("(dry run) " if args.dry_run else "") + result.summary())
    sys.stdout.flush()
    return 0
