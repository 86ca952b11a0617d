"""Evaluation records: one row of evaluation.json, shaped by the evaluation contract (DESIGN §5)."""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa

from .judge import TOO_FEW

_FLOATS = ("value", "chance_value", "random_value", "random_sd", "ci_low", "ci_high")


@dataclass(frozen=True)
class MetricRecord:
    """(model_version, split, metric, k, clusters) is the key; chance, random and the judged interval sit beside.

    `k` is a neighbour count (P@k, NDCG@k, the kNN vote of the normal AUC); `clusters` is the k-means
    cluster count of NMI and purity. `chance_value` is the metric's true null at this size (the mean
    over label permutations that keep patients together); `random_value` the mean over several
    random embeddings, `random_sd` their spread. `verdict` is one of radsim.evaluation.judge.VERDICTS;
    a record "too few to judge" has no interval (`note` says why) but keeps its value and n.
    `decision` and `collapsed` are the model's gate decision and collapse check, when known.
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
    verdict: str = TOO_FEW
    n_queries: int | None = None
    n_patients: int | None = None
    random_sd: float | None = None
    note: str | None = None
    decision: str | None = None
    collapsed: bool | None = None

    @property
    def judged(self) -> bool:
        return self.verdict != TOO_FEW

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: NaN becomes None (JSON has no NaN)."""
        d = asdict(self)
        for key in _FLOATS:
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
