"""The `radsim` command. Each subcommand lives in `radsim.flows.commands.<name>`.

Errors are one line without a traceback (`--debug` shows it); exit codes follow DESIGN §4:
0 done, 1 the run failed, 2 usage or input error.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Sequence

from radsim.data_contracts.errors import RadsimError
from radsim.flows.streams import ClosedPipeSafe

# Imported lazily so `radsim label --help` does not pay for torch or prefect.
COMMANDS = ("synth", "label", "label-audit", "label-score", "demo", "shard", "publish", "evaluate", "similar", "train",
            "run", "worker", "deploy", "prune", "key")


# Which optional extra brings a module that a plain `pip install radsim` leaves out (DESIGN §2).
EXTRA_FOR_MODULE = {
    "pydicom": "imaging", "pylibjpeg": "imaging", "PIL": "imaging", "webdataset": "imaging",
    "torch": "training", "pytorch_metric_learning": "training",
    "sklearn": "evaluation", "matplotlib": "evaluation", "faiss": "evaluation",
    "dask": "scale", "distributed": "scale", "prefect_dask": "scale",
}


def require_extras(*extras: str) -> None:
    """Import the packages of these extras now, so a missing one is the CLI's one-line exit 2.

    A command that starts a Prefect flow calls this first: a package missing inside the flow
    would otherwise be logged by Prefect with its traceback before the CLI could say which extra
    to install.
    """
    for module, extra in EXTRA_FOR_MODULE.items():
        if extra in extras and module not in ("dask", "distributed", "prefect_dask"):
            importlib.import_module(module)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's default prints usage twice over two lines
        self.print_usage(sys.stderr)
        print(f"radsim: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="radsim",
        description="Radiological similarity for chest radiographs: report labels, shards, "
        "multi-label metric learning and published embeddings.",
        epilog=(
            "Run 'radsim COMMAND --help' for a command's options. "
            "Exit codes: 0 done, 1 failed, 2 usage or input error."
        ),
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"radsim.flows.commands.{name.replace('-', '_')}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    original = sys.stdout
    sys.stdout = ClosedPipeSafe(original)  # type: ignore[assignment]
    try:
        return _main(argv)
    finally:
        sys.stdout.flush()
        sys.stdout = original


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except RadsimError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"radsim {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ModuleNotFoundError as exc:
        if args.debug:
            traceback.print_exc()
        extra = EXTRA_FOR_MODULE.get((exc.name or "").split(".")[0], "all")
        print(f"radsim {args.command}: error: this command needs the '{exc.name}' package, "
              f"which a plain install leaves out; install it with: pip install 'radsim[{extra}]'", file=sys.stderr)
        return 2  # an installation error is a usage error (DESIGN §4)
    except KeyboardInterrupt:
        print(f"radsim {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI promises one line, not a traceback
        if args.debug:
            traceback.print_exc()
        first = (str(exc).splitlines() or [""])[0]
        print(
            f"radsim {args.command}: failed: {type(exc).__name__}: {first} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
