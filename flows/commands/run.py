"""`radsim run INBOX --warehouse DIR`: the scheduled pipeline, once, in Prefect's ephemeral mode (DESIGN §4)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "run"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        NAME,
        help="run the pipeline once on an inbox (only new or amended exams are processed)",
        description="Ingest INBOX (a folder of exam folders, each with report.txt and <image_index>.dcm|png|jpg, "
        "or an exams manifest CSV/Parquet), then label new and amended reports, shard new images, train when "
        "the warehouse has no current model (or with --retrain, promoting only a model that is not worse), "
        "embed every image with the current model, publish, and evaluate when paths.truth is configured. "
        "The warehouse ledger decides what is new: a rerun on an unchanged inbox does nothing. "
        "Settings: command line > environment (RADSIM_*) > radsim.toml > defaults; the resolved settings are "
        "saved as WAREHOUSE/config.json. Needs RADSIM_ID_KEY (or --demo-key for synthetic data).",
    )
    p.add_argument("inbox", nargs="?", default=None, metavar="INBOX",
                   help="inbox folder or exams manifest file; a folder may also be an fsspec URI such as "
                   "s3://bucket/inbox (default: paths.inbox from the configuration)")
    p.add_argument("--warehouse", default=None, metavar="DIR",
                   help="warehouse folder, a path or an fsspec URI (s3://, gs://, memory://; the run works on a "
                   "local mirror under $RADSIM_CACHE and pushes it back when it succeeds) "
                   "(default: paths.warehouse from the configuration)")
    p.add_argument("--retrain", action="store_true",
                   help="retrain from all shards; the new model replaces the current one only if it passes the gates")
    p.add_argument("--force-promote", action="store_true", default=None,
                   help="publish or promote the model a run trains even if the gates refuse it (recorded as forced)")
    p.add_argument("--config", default=None, metavar="radsim.toml",
                   help="configuration file (default: ./radsim.toml when it exists)")
    p.add_argument("--truth", default=None, metavar="LABELS", help="validated labels subset for the evaluation")
    p.add_argument("--image-size", type=int, default=None, metavar="PX", help="shard image size (imaging.image_size)")
    p.add_argument("--demo-key", action="store_true",
                   help="use the public demo pseudonymisation key: synthetic data only, never patient data")
    p.add_argument(
        "--verify",
        action="store_true",
        help="re-read and re-hash every inbox file instead of trusting unchanged file stats (size, mtime, "
        "inode, ctime): after restoring an inbox from a backup that does not keep mtimes, or to audit a file "
        "system that rewrites files in place with the same timestamps",
    )
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)


def check_prefect_server(environ: dict[str, str] | None = None, timeout: float = 5.0) -> None:
    """With PREFECT_API_URL set, the server must answer; otherwise fail now with its URL, not mid-run."""
    import os
    import urllib.error
    import urllib.request

    from radsim.data_contracts import RadsimError

    url = (os.environ if environ is None else environ).get("PREFECT_API_URL", "")
    if not url:
        return  # ephemeral mode
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=timeout):  # noqa: S310 - user's own server
            return
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RadsimError(f"the Prefect server at {url} is not reachable ({reason}); start it with "
                          "'prefect server start' or unset PREFECT_API_URL to run in ephemeral mode") from None


def run(args: argparse.Namespace) -> int:
    from radsim.data_contracts import UsageError, keyer_from_env
    from radsim.flows.cli import require_extras
    from radsim.flows.config import resolve_config

    toml_path = args.config or ("radsim.toml" if Path("radsim.toml").is_file() else None)
    cfg = resolve_config({"paths.inbox": args.inbox, "paths.warehouse": args.warehouse, "paths.truth": args.truth,
                          "imaging.image_size": args.image_size, "model.force_promote": args.force_promote}, toml_path)
    inbox, warehouse = cfg.paths.inbox, cfg.paths.warehouse
    require_extras("imaging", "training", *(("evaluation",) if cfg.paths.truth else ()))  # before any flow starts
    if not inbox:
        raise UsageError("no inbox given: pass INBOX or set paths.inbox in radsim.toml")
    if not warehouse:
        raise UsageError("no warehouse given: pass --warehouse DIR or set paths.warehouse in radsim.toml")
    from radsim.warehouse.storage import filesystem, is_remote, local_path

    for location in (inbox, warehouse):
        if is_remote(location):
            filesystem(str(location))  # a missing fsspec backend is one line now, before Prefect starts
    if not is_remote(inbox) and not local_path(inbox).exists():
        raise UsageError(f"inbox {inbox} does not exist")
    keyer = keyer_from_env(demo=args.demo_key)  # fail before Prefect starts when there is no key
    if not is_remote(warehouse):
        from radsim.warehouse.keycheck import check_warehouse_key

        check_warehouse_key(local_path(warehouse), keyer)  # another key: one line, nothing written
    check_prefect_server()
    from radsim.flows.pipeline import ephemeral_run, pipeline

    with ephemeral_run():
        result = pipeline(str(inbox), str(warehouse), retrain=args.retrain, config=cfg, demo_key=args.demo_key,
                          progress=not args.no_progress, verify=args.verify)
    from radsim.flows.run_report import summary_lines

    shown = warehouse if is_remote(warehouse) else Path(warehouse).resolve()
    print(f"\nradsim run finished in {result.seconds:.0f} s; warehouse {shown}")
    print("\n".join(summary_lines(result, "Counts (rows in = out + quarantined + skipped as already processed):")))
    sys.stdout.flush()
    return 0
