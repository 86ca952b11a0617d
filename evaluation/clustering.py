"""Clustering quality of embeddings against label-powerset classes (DESIGN §9).

The classes are exact label sets ("label powerset"); only items in the 10 most frequent
classes take part, and k-means uses k = the number of those classes. Scores: NMI
(arithmetic normalisation, as scikit-learn's) and purity (share of items in their cluster's
majority class), both from one contingency table. Their chance is the true null of
radsim.evaluation.nulls: the same clusters, with the classes permuted among the clustered items.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import DEFAULT_SEED
from .labelsets import as_label_matrix
from .neighbours import as_matrix, l2_normalise

#: items of the most frequent label sets k-means clusters: a long tail of rare sets is left out
TOP_CLASSES = 10


@dataclass
class ClusterScores:
    n_items: int
    n_clusters: int
    nmi: float
    purity: float
    items: np.ndarray | None = None  # indices of the clustered items (for intervals)
    pred: np.ndarray | None = None  # their k-means clusters
    classes: np.ndarray | None = None  # their powerset classes


def powerset_classes(
    labels: np.ndarray, top: int = TOP_CLASSES
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, ...]]]:
    """(mask of items kept, class id per kept item, class keys as tuples of label columns).

    Items with an empty label set are never kept. Ties in frequency go to the smaller key.
    """
    lab = as_label_matrix(labels)
    keys = [tuple(np.flatnonzero(row)) for row in lab]
    freq: dict[tuple[int, ...], int] = {}
    for key in keys:
        if key:
            freq[key] = freq.get(key, 0) + 1
    chosen = sorted(freq, key=lambda kk: (-freq[kk], kk))[:top]
    index = {key: i for i, key in enumerate(chosen)}
    mask = np.array([key in index for key in keys], dtype=bool)
    classes = np.array([index[key] for key in keys if key in index], dtype=np.int64)
    return mask, classes, chosen


def contingency_scores(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(NMI, purity) of a clustering against classes, from their contingency table.

    NMI uses the arithmetic mean of the two entropies, as scikit-learn's default; it is written
    out here because the permutation null evaluates it a thousand times per evaluation.
    """
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.size == 0:
        return float("nan"), float("nan")
    _, p = np.unique(pred, return_inverse=True)
    _, t = np.unique(truth, return_inverse=True)
    cols = int(t.max()) + 1
    table = np.bincount(p * cols + t, minlength=(int(p.max()) + 1) * cols).reshape(-1, cols).astype(np.float64)
    purity_value = float(table.max(1).sum() / pred.size)
    if table.shape[0] == table.shape[1] == 1:
        return 1.0, purity_value  # one cluster and one class: identical labellings (scikit-learn's convention)
    joint = table / pred.size
    rows, cols_p = joint.sum(1), joint.sum(0)
    nz = joint > 0
    mi = float((joint[nz] * np.log(joint[nz] / np.outer(rows, cols_p)[nz])).sum())
    entropy = float(_entropy(rows) + _entropy(cols_p)) / 2.0
    return (max(mi, 0.0) / entropy if entropy > 0 else 0.0), purity_value


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def purity(pred: np.ndarray, truth: np.ndarray) -> float:
    """Sum over clusters of the majority-class count, divided by the number of items."""
    return contingency_scores(pred, truth)[1]


def nmi(pred: np.ndarray, truth: np.ndarray) -> float:
    return contingency_scores(pred, truth)[0]


def cluster_scores(
    embeddings: np.ndarray,
    labels: np.ndarray,
    *,
    top: int = TOP_CLASSES,
    seed: int = DEFAULT_SEED,
    n_init: int = 4,
) -> ClusterScores:
    """k-means on the (L2-normalised) embeddings of the items in the `top` powerset classes."""
    emb = as_matrix(embeddings)
    mask, classes, keys = powerset_classes(as_label_matrix(labels, emb.shape[0]), top)
    k = len(keys)
    if k < 2 or classes.size <= k:
        return ClusterScores(int(classes.size), k, float("nan"), float("nan"))
    from sklearn.cluster import KMeans

    x = l2_normalise(emb[mask])
    pred = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(x)
    nmi_value, purity_value = contingency_scores(pred, classes)
    return ClusterScores(n_items=int(classes.size), n_clusters=k, nmi=nmi_value, purity=purity_value,
                         items=np.flatnonzero(mask), pred=pred, classes=classes)
