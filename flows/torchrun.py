"""The torchrun entry point: `torchrun ... -m radsim.flows.torchrun ARGS` is `radsim train ARGS` on each rank.

A rank dies with its torchrun (radsim.model.launch.die_with_parent), so a killed launcher
never leaves ranks holding the process group.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from radsim.flows.cli import main as cli_main

    if "LOCAL_RANK" in os.environ:
        from radsim.model.launch import die_with_parent

        die_with_parent()
    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
