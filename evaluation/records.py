"""Evaluation records: one row of evaluation.json, shaped by the evaluation contract (DESIGN §5)."""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa


@dataclass(frozen=True)
class MetricRecord:
    """(model_version, split, metric, k) is the key; chance/random values sit beside the value."""

    model_version: str
    split: str
    metric: str
    k: int | None
    value: float
    chance_value: float | None = None
    random_value: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: NaN becomes None (JSON has no NaN)."""
        d = asdict(self)
        for key in ("value", "chance_value", "random_value"):
            v = d[key]
            d[key] = None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
        return d


def records_to_table(records: Iterable[MetricRecord]) -> pa.Table:
    """A table validated against the evaluation contract (ContractViolation on a bad record)."""
    from radsim.data_contracts import load_contract, rows_to_table

    contract = load_contract("evaluation")
    rows = []
    for r in records:
        d = r.to_dict()
        if d["value"] is None:
            d["value"] = float("nan")  # value is required; NaN says "not computable"
        rows.append(d)
    return contract.validate(rows_to_table(contract, rows))
