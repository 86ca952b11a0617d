"""95% bootstrap intervals for retrieval metrics, resampling patients (DESIGN §9).

Images of one patient are not independent: a patient's follow-up films look alike and share
findings. So an interval resamples *patients* with replacement, and every query (and every
normal-AUC item) of a drawn patient counts as often as the patient was drawn. The gallery stays
fixed: the resampling describes the uncertainty of the query set, as the paper's protocol does.

Pair statistics (the AUC) and clustering scores are biased by duplicated patients; their
percentile intervals are shifted back by the bootstrap's bias (`bias_corrected`).

A metric is *distinguishable from chance* only when its interval lies above both its chance level
(random ranking) and its random-embedding value; otherwise the report and the CLI say so.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .retrieval import RetrievalScores

DEFAULT_REPLICATES = 1000


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float

    @property
    def defined(self) -> bool:
        return all(math.isfinite(x) for x in (self.value, self.low, self.high))

    def above(self, *levels: float | None) -> bool:
        """Does the whole interval lie above every given level (chance, random, a baseline)?"""
        known = [float(x) for x in levels if x is not None and math.isfinite(float(x))]
        return self.defined and all(self.low > x for x in known)

    def text(self, spec: str = ".3f") -> str:
        if not math.isfinite(self.value):
            return "n/a"
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return format(self.value, spec)
        return f"{self.value:{spec}} [{self.low:{spec}}, {self.high:{spec}}]"

    def as_dict(self) -> dict[str, float | None]:
        return {"value": _num(self.value), "ci_low": _num(self.low), "ci_high": _num(self.high)}


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


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
                        seed: int = 0) -> dict[str, Interval]:
    """Intervals of P@k, mAP@R and the normal AUC (and of their chance levels) from per-query values.

    `item_groups[i]` is item i's patient (any hashable); `scores` must come from
    `retrieval_scores(..., per_query=True)`.
    """
    if scores.query_items is None:
        raise ValueError("retrieval_intervals needs retrieval_scores(..., per_query=True)")
    _, groups = np.unique(np.asarray([str(g) for g in item_groups]), return_inverse=True)
    n_groups = int(groups.max()) + 1 if groups.size else 0
    q = scores.query_items
    means: dict[str, np.ndarray] = {f"precision_at_{k}": v for k, v in scores.query_precision.items()}
    means.update({"precision_at_chance": scores.query_precision_chance, "map_at_r": scores.query_ap,
                  "map_at_r_chance": scores.query_ap_chance})
    means = {k: v for k, v in means.items() if v is not None and v.size}
    items = {k: q for k in means}
    for k, values in scores.query_ndcg.items():
        if values.size:
            means[f"ndcg_at_{k}"], items[f"ndcg_at_{k}"] = values, scores.ndcg_items[k]
    has_auc = scores.votes is not None and scores.votes.size > 0
    boot: dict[str, list[float]] = {k: [] for k in [*means, *(["normal_auc"] if has_auc else [])]}
    item_groups_of = {name: groups[idx] for name, idx in items.items()}
    vg = groups[scores.vote_items] if has_auc else None
    for mult in group_draws(n_groups, replicates, seed):
        for name, values in means.items():
            w = mult[item_groups_of[name]]
            total = w.sum()
            boot[name].append(float((w * values).sum() / total) if total else float("nan"))
        if has_auc:
            boot["normal_auc"].append(weighted_auc(scores.votes, scores.vote_truth, mult[vg]))
    out = {name: Interval(float(values.mean()), *percentile_bounds(np.array(boot[name]))) for name, values in means.items()}
    if has_auc:
        point = float(scores.normal_auc) if scores.normal_auc is not None else float("nan")
        out["normal_auc"] = bias_corrected(point, np.array(boot["normal_auc"]))
    return out


def cluster_intervals(scores: Any, item_groups: Sequence[object], *, replicates: int = 300,
                      seed: int = 0) -> dict[str, Interval]:
    """Intervals of k-means NMI and purity: the clustering is kept, the clustered items resampled by patient.

    Drawing items with replacement duplicates them, which inflates both scores; the interval is
    shifted back by that bias (the mean bootstrap value minus the point value).
    """
    from .clustering import nmi, purity

    if scores.items is None or scores.pred is None or not math.isfinite(scores.nmi):
        return {}
    _, groups = np.unique(np.asarray([str(g) for g in item_groups]), return_inverse=True)
    own = groups[scores.items]
    boot: dict[str, list[float]] = {"nmi": [], "purity": []}
    for mult in group_draws(int(groups.max()) + 1, replicates, seed):
        take = np.repeat(np.arange(own.size), mult[own])
        if take.size < 2:
            continue
        boot["nmi"].append(nmi(scores.pred[take], scores.classes[take]))
        boot["purity"].append(purity(scores.pred[take], scores.classes[take]))
    return {name: bias_corrected(point, np.array(boot[name])) for name, point in (("nmi", scores.nmi),
                                                                                     ("purity", scores.purity))}


def bias_corrected(point: float, samples: np.ndarray) -> Interval:
    """Percentile interval shifted by the bootstrap's bias.

    Drawing a patient twice duplicates its items: that inflates NMI and purity, and it doubles the
    weight of the pairs within a patient in the AUC (a pair statistic), which a patient's own films
    make hard to rank. The shift puts the interval back around the point value.
    """
    lo, hi = percentile_bounds(samples)
    finite = samples[np.isfinite(samples)] if samples.size else samples
    bias = float(finite.mean()) - point if finite.size else 0.0
    return Interval(point, lo - bias, hi - bias)
