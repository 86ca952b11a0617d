"""95% bootstrap intervals for retrieval metrics, resampling patients (DESIGN §9).

Images of one patient are not independent: a patient's follow-up films look alike and share
findings. So an interval resamples *patients* with replacement, and every query (and every
normal-AUC item) of a drawn patient counts as often as the patient was drawn. The gallery stays
fixed: the resampling describes the uncertainty of the query set, as the paper's protocol does.

The AUC, a pair statistic, is biased by duplicated patients; its percentile interval is shifted
back by the bootstrap's bias (`bias_corrected`).

radsim.evaluation.judge uses them only where a metric has no permutation null (mAP@R at a size
whose rankings do not fit); elsewhere the inverted permutation test is the interval, because a
bootstrap over few patients ignores that queries share their neighbours and claims too much.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from radsim.data_contracts.intervals import Interval

from .config import DEFAULT_SEED
from .retrieval import RetrievalScores

DEFAULT_REPLICATES = 1000


def weighted_auc(scores: np.ndarray, truth: np.ndarray, weights: np.ndarray) -> float:
    """ROC AUC with item weights (ties count half): the Mann-Whitney statistic of a resample."""
    scores, truth, w = np.asarray(scores, float), np.asarray(truth, bool), np.asarray(weights, float)
    w_pos, w_neg = float(w[truth].sum()), float(w[~truth].sum())
    if w_pos <= 0 or w_neg <= 0:
        return float("nan")
    values, inverse = np.unique(scores, return_inverse=True)
    pos = np.bincount(inverse, weights=w * truth, minlength=len(values))
    neg = np.bincount(inverse, weights=w * ~truth, minlength=len(values))
    below = np.cumsum(neg) - neg  # negative weight strictly below each value
    return float((pos * (below + 0.5 * neg)).sum() / (w_pos * w_neg))


def percentile_bounds(samples: np.ndarray) -> tuple[float, float]:
    samples = samples[np.isfinite(samples)]
    if samples.size < 2:
        return float("nan"), float("nan")
    lo, hi = np.percentile(samples, [2.5, 97.5])
    return float(lo), float(hi)


def group_draws(n_groups: int, replicates: int, seed: int):
    """Per replicate, how often each group is drawn (groups drawn with replacement); O(groups) memory."""
    rng = np.random.default_rng(seed)
    for _ in range(replicates):
        yield np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups) if n_groups else np.zeros(0)


def retrieval_intervals(scores: RetrievalScores, item_groups: Sequence[object], *, replicates: int = DEFAULT_REPLICATES,
                        seed: int = DEFAULT_SEED) -> dict[str, Interval]:
    """Bootstrap intervals of every metric kept per query (P@k, mAP@R, NDCG@k, per-finding P@k) and the normal AUC.

    `item_groups[i]` is item i's patient (any hashable); `scores` must come from
    `retrieval_scores(..., per_query=True)`. Keys are those of `RetrievalScores.values()`.
    """
    if not scores.per_query and scores.votes is None:
        raise ValueError("retrieval_intervals needs retrieval_scores(..., per_query=True)")
    _, groups = np.unique(np.asarray([str(g) for g in item_groups]), return_inverse=True)
    n_groups = int(groups.max()) + 1 if groups.size else 0
    kept = {name: qv for name, qv in scores.per_query.items() if qv.values.size}
    has_auc = scores.votes is not None and scores.votes.values.size > 0
    boot: dict[str, list[float]] = {name: [] for name in kept}
    auc_boot: list[float] = []
    for mult in group_draws(n_groups, replicates, seed):
        for name, qv in kept.items():
            w = mult[groups[qv.items]]
            total = w.sum()
            boot[name].append(float((w * qv.values).sum() / total) if total else float("nan"))
        if has_auc:
            auc_boot.append(weighted_auc(scores.votes.values, scores.vote_truth, mult[groups[scores.votes.items]]))
    out = {
        name: Interval(float(qv.values.mean()), *percentile_bounds(np.array(boot[name]))) for name, qv in kept.items()
    }
    if has_auc:
        point = float(scores.normal_auc) if scores.normal_auc is not None else float("nan")
        out["normal_auc"] = bias_corrected(point, np.array(auc_boot))
    return out


def bias_corrected(point: float, samples: np.ndarray) -> Interval:
    """Percentile interval shifted by the bootstrap's bias.

    Drawing a patient twice doubles the weight of the pairs within a patient in the AUC (a pair
    statistic), which a patient's own films make hard to rank. The shift puts the interval back
    around the point value.
    """
    lo, hi = percentile_bounds(samples)
    finite = samples[np.isfinite(samples)] if samples.size else samples
    bias = float(finite.mean()) - point if finite.size else 0.0
    return Interval(point, lo - bias, hi - bias)
