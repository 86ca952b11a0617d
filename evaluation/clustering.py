"""Clustering quality of embeddings against label-powerset classes (DESIGN §9).

The classes are exact label sets ("label powerset"); only items in the 10 most frequent
classes take part, and k-means uses k = the number of those classes. Scores: NMI
(arithmetic normalisation, scikit-learn) and purity (share of items in their cluster's
majority class). Chance is estimated, not closed-form: the mean score of uniformly random
assignments to k clusters over `chance_draws` seeded draws.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .labelsets import as_label_matrix
from .neighbours import as_matrix, l2_normalise


@dataclass
class ClusterScores:
    n_items: int
    n_clusters: int
    nmi: float
    purity: float
    nmi_chance: float
    purity_chance: float
    items: np.ndarray | None = None  # indices of the clustered items (for intervals)
    pred: np.ndarray | None = None  # their k-means clusters
    classes: np.ndarray | None = None  # their powerset classes


def powerset_classes(labels: np.ndarray, top: int = 10) -> tuple[np.ndarray, np.ndarray, list[tuple[int, ...]]]:
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


def purity(pred: np.ndarray, truth: np.ndarray) -> float:
    """Sum over clusters of the majority-class count, divided by the number of items."""
    pred = np.asarray(pred)
    truth = np.asarray(truth)
    if pred.size == 0:
        return float("nan")
    _, p = np.unique(pred, return_inverse=True)
    _, t = np.unique(truth, return_inverse=True)
    table = np.zeros((p.max() + 1, t.max() + 1), dtype=np.int64)
    np.add.at(table, (p, t), 1)
    return float(table.max(1).sum() / pred.size)


def nmi(pred: np.ndarray, truth: np.ndarray) -> float:
    from sklearn.metrics import normalized_mutual_info_score

    return float(normalized_mutual_info_score(truth, pred))


def cluster_scores(
    embeddings: np.ndarray,
    labels: np.ndarray,
    *,
    top: int = 10,
    seed: int = 0,
    n_init: int = 4,
    chance_draws: int = 20,
) -> ClusterScores:
    """k-means on the (L2-normalised) embeddings of the items in the `top` powerset classes."""
    emb = as_matrix(embeddings)
    mask, classes, keys = powerset_classes(as_label_matrix(labels, emb.shape[0]), top)
    k = len(keys)
    if k < 2 or classes.size <= k:
        nan = float("nan")
        return ClusterScores(int(classes.size), k, nan, nan, nan, nan)
    from sklearn.cluster import KMeans

    x = l2_normalise(emb[mask])
    pred = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(x)
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, k, size=classes.size) for _ in range(chance_draws)]
    return ClusterScores(
        n_items=int(classes.size),
        n_clusters=k,
        nmi=nmi(pred, classes),
        purity=purity(pred, classes),
        nmi_chance=float(np.mean([nmi(d, classes) for d in draws])),
        purity_chance=float(np.mean([purity(d, classes) for d in draws])),
        items=np.flatnonzero(mask), pred=pred, classes=classes,
    )
