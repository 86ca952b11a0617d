"""Label sets and the primitives every metric is built on: relevance, Jaccard gain, harmonic numbers, AUC.

Labels are a multi-hot matrix `n x F`; CheXpert-style values (1, 0, -1, NaN) become one with
`label_sets`, through `label_weights`, radsim's one conversion of label values to label sets. numpy only.
"""
from __future__ import annotations

from typing import Any

import numpy as np

# ----------------------------------------------------------------------------- labels
#: What an uncertain finding (-1) weighs in a label set, the one meaning of "uncertain" everywhere:
#: the evaluation and ML2 count it absent, ML2+ at one half (DESIGN §8), an opt-in count present.
UNCERTAIN_ABSENT = 0.0
UNCERTAIN_HALF = 0.5
UNCERTAIN_PRESENT = 1.0


def label_weights(values: Any, uncertain: float = UNCERTAIN_ABSENT) -> np.ndarray:
    """The one conversion from CheXpert-style values to label sets: float32 [items, findings] weights in [0, 1].

    1 (present) weighs 1; 0 (absent), NaN and None (not mentioned) weigh 0; -1 (uncertain) weighs
    `uncertain`; a soft value in [0, 1] passes through, so converting twice is harmless. A finding
    belongs to an item's set when its weight is above 0: two items share a label when their
    weights overlap. The sampler, the losses and miners (radsim.model.labelsets) and the
    evaluation all read label sets through this function.
    """
    if not 0.0 <= uncertain <= 1.0:
        raise ValueError(f"uncertain must lie in [0, 1], got {uncertain}")
    arr = np.asarray(values)
    if arr.dtype == object:
        arr = np.array([[np.nan if v is None else v for v in row] for row in arr], dtype=np.float64)
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"labels must be a 2-D matrix (items x findings), got shape {arr.shape}")
    x = np.where(arr == -1, uncertain, np.nan_to_num(arr, nan=0.0))
    bad = (x < 0) | (x > 1)
    if bad.any():
        raise ValueError(f"label values must be 1, 0, -1, NaN or soft values in [0, 1]; got {x[bad][0]}")
    return x.astype(np.float32)


def label_sets(values: np.ndarray, uncertain_positive: bool = False) -> np.ndarray:
    """Multi-hot bool matrix from CheXpert-style values: the findings whose weight (`label_weights`) is above 0.

    Uncertain findings count as absent, or as present with `uncertain_positive`. Already-boolean
    or 0/1 matrices pass through unchanged.
    """
    return label_weights(values, UNCERTAIN_PRESENT if uncertain_positive else UNCERTAIN_ABSENT) > 0


def as_label_matrix(labels: np.ndarray, n: int | None = None) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.dtype != bool:
        lab = label_sets(lab)
    if lab.ndim != 2:
        raise ValueError(f"labels must be a 2-D matrix (items x findings), got shape {lab.shape}")
    if n is not None and lab.shape[0] != n:
        raise ValueError(f"labels have {lab.shape[0]} rows but embeddings have {n}")
    return lab


def intersections(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|A_i & B_j| for multi-hot rows (exact: float32 holds small integer counts)."""
    return a.astype(np.float32) @ b.astype(np.float32).T


def relevance_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """True where rows share >= 1 label."""
    return intersections(a, b) > 0


def jaccard_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Jaccard similarity of label sets (0 where both are empty)."""
    inter = intersections(a, b)
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


# ------------------------------------------------------------------------ chance math
def harmonic(r: np.ndarray) -> np.ndarray:
    """H_r for integer r >= 0 (vectorised via a cumulative table)."""
    r = np.asarray(r, dtype=np.int64)
    table = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, max(int(r.max(initial=0)), 1) + 1))])
    return table[r]


def map_at_r_expected(r: np.ndarray, n_others: int) -> np.ndarray:
    """Exact E[AP@R] under a uniformly random ranking of `n_others` items, R of them relevant."""
    r = np.asarray(r, dtype=np.float64)
    big_n = float(n_others)
    h = harmonic(r.astype(np.int64))
    if big_n <= 1:
        return np.ones_like(r)
    return (h + (r - 1.0) * (r - h) / (big_n - 1.0)) / big_n


def discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def roc_auc(scores: np.ndarray, truth: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula, ties counted half; NaN without both classes."""
    scores = np.asarray(scores, dtype=np.float64)
    truth = np.asarray(truth, dtype=bool)
    n_pos, n_neg = int(truth.sum()), int((~truth).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)
    avg_rank = upper - (counts - 1) / 2.0  # 1-based average rank of each distinct value
    ranks = avg_rank[inverse]
    return float((ranks[truth].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def mean_or_nan(total: float, count: int) -> float:
    """total / count, NaN when nothing was counted (a metric with no scored query)."""
    return float(total / count) if count else float("nan")
