"""Evaluation records: one row of evaluation.json, shaped by the evaluation contract (DESIGN §5)."""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa


@dataclass(frozen=True)
class MetricRecord:
    """(model_version, split, metric, k, clusters) is the key; chance/random values and the interval sit beside.

    `k` is a neighbour count (P@k, NDCG@k, the kNN vote of the normal AUC); `clusters` is the k-means
    cluster count of NMI and purity. `ci_low`/`ci_high` bound the 95% bootstrap interval (patients
    resampled); a value whose interval reaches its chance or random value is not distinguishable.
    """

    model_version: str
    split: str
    metric: str
    k: int | None
    value: float
    chance_value: float | None = None
    random_value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    clusters: int | None = None

    @property
    def distinguishable(self) -> bool | None:
        """Does the interval lie above both the chance and the random-embedding value? None without one."""
        if self.ci_low is None or not math.isfinite(self.ci_low):
            return None
        levels = [v for v in (self.chance_value, self.random_value) if v is not None and math.isfinite(v)]
        return all(self.ci_low > v for v in levels)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: NaN becomes None (JSON has no NaN)."""
        d = asdict(self)
        for key in ("value", "chance_value", "random_value", "ci_low", "ci_high"):
            v = d[key]
            d[key] = None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
        d["distinguishable_from_chance"] = self.distinguishable
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
