"""Verdicts a reader can trust at any size: above chance, below chance, not distinguishable, or too few to judge.

A metric's 95% interval inverts its permutation test (Lehmann's interval under a shift model):
with c the mean of the metric's permutation null (radsim.evaluation.nulls) and q2.5, q97.5 its
quantiles, the interval is [v - (q97.5 - c), v + (c - q2.5)], the values of the metric whose
null, shifted there, would not reject v at 5%. So "the interval excludes chance" is exactly a
two-sided permutation test at 5%: under no association a claim is made 5% of the time, whatever
n, k and the patients, where a bootstrap over a handful of patients claims far more (it ignores
that queries share their neighbours). The patients' blocks of the permutations carry their
dependence into the interval. Only a metric without a null (mAP@R at a size whose rankings do not
fit, radsim.evaluation.nulls.MAP_NULL_BUDGET) falls back to the bootstrap over patients.
Bounds are clipped to the metric's range. A metric that cannot move under permuted labels at this
size, or whose sample is below `MinimumSizes`, is *too few to judge*: it has no interval and no
verdict, and evaluation.json keeps its value and n.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from radsim.data_contracts.verdicts import ABOVE, BELOW, NOT_DISTINGUISHABLE, TOO_FEW, VERDICTS

from .intervals import Interval
from .nulls import MIN_NULL_DRAWS

__all__ = ["ABOVE", "BELOW", "NOT_DISTINGUISHABLE", "TOO_FEW", "VERDICTS", "Judgement", "MinimumSizes", "judge"]


@dataclass(frozen=True)
class MinimumSizes:
    """Below these sizes a metric is too few to judge (README, Evaluation).

    From `python -m bench.bench_calibration --no-minimum`: the permutation test keeps its false
    claims near 3% at every size, but below 5 patients a real effect is called no more often than
    a false one (3% of records on nih-dev and the synthetic cohort, against 10-48% from 5 patients
    up), so a verdict there carries no information. An AUC needs both classes; with fewer than 3
    exams in one, its vote takes a handful of values.
    """

    patients: int = 5  # patients among a metric's queries
    class_size: int = 3  # normal and abnormal queries each, for the normal-vs-abnormal AUC


DEFAULT_MINIMUM = MinimumSizes()


@dataclass(frozen=True)
class Judgement:
    verdict: str
    ci_low: float | None = None
    ci_high: float | None = None
    note: str | None = None  # why a metric is too few to judge

    @property
    def judged(self) -> bool:
        return self.verdict != TOO_FEW


def too_few(note: str) -> Judgement:
    return Judgement(TOO_FEW, note=note)


def null_chance(null: np.ndarray | None) -> float | None:
    """The metric's chance value: the mean of its permutation null (None without one)."""
    if null is None:
        return None
    finite = null[np.isfinite(null)]
    return float(finite.mean()) if finite.size else None


def judge(value: float, chance: float | None, null: np.ndarray | None, boot: Interval | None,
          bounds: tuple[float, float] = (0.0, 1.0)) -> Judgement:
    """The interval and verdict of one metric: its permutation test inverted, else its bootstrap interval."""
    if value is None or not math.isfinite(value) or chance is None or not math.isfinite(chance):
        return too_few("not computable on these exams")
    if null is not None:
        finite = null[np.isfinite(null)]
        if finite.size < MIN_NULL_DRAWS:
            return too_few("too few exams for a null distribution")
        # a drawn value at or beyond each 2.5% tail, not an interpolation between draws: the Monte
        # Carlo test then never rejects more often than its level
        low_q, high_q = np.percentile(finite, 2.5, method="lower"), np.percentile(finite, 97.5, method="higher")
        if not high_q > low_q:
            return too_few("the metric does not vary under permuted labels at this size")
        low, high = value - (float(high_q) - chance), value + (chance - float(low_q))
    elif boot is not None and math.isfinite(boot.low) and math.isfinite(boot.high):
        low, high = boot.low, boot.high
    else:
        return too_few("no interval could be formed")
    low, high = max(bounds[0], low), min(bounds[1], high)
    if not high > low:
        return too_few("the metric cannot vary with the embedding at this size")
    verdict = ABOVE if low > chance else BELOW if high < chance else NOT_DISTINGUISHABLE
    return Judgement(verdict, low, high)
