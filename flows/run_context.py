"""What every step of one pipeline (or train) run shares: where it runs, with which settings, and how it reports.

One value instead of the same six arguments threaded through every step (DESIGN §11: flows only
chain steps; this is the chain's state).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from radsim.flows.run_config import RunConfig
from radsim.warehouse.layout import WarehouseLayout


@dataclass(frozen=True)
class RunContext:
    layout: WarehouseLayout
    cfg: RunConfig
    result: Any  # the run's PipelineResult, filled in as the steps go
    demo_key: bool = False
    progress: bool = False
    quiet: bool = False
    keyer: Any = None  # the site key (radsim.data_contracts.IdKeyer), checked before anything is written
    ceiling: Any = None  # the quarantine ceiling (radsim.data_contracts.reconcile.QuarantineCeiling)
