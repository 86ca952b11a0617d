"""Leave-one-out retrieval metrics for multi-label embeddings, each with its chance level.

Definitions (DESIGN §9), all numpy, all leave-one-out (the query never retrieves itself):

* Labels are a multi-hot matrix `n x F`; `no_finding` is a column like any other, so two
  normal exams are relevant to each other. Item j is **relevant** to query q when they
  share >= 1 label.
* **Scored queries**: a query with an empty label set, or with no relevant item among
  the others ("lone" query), is excluded from P@k, mAP@R and NDCG, as
  pytorch-metric-learning's AccuracyCalculator excludes lone queries. The count is reported.
* **P@k**: fraction of the top k neighbours that are relevant (divided by min(k, n-1)).
  Chance: under a random ranking every position is relevant with probability R_q/(n-1),
  so chance = mean over queries of R_q/(n-1), whatever k.
* **mAP@R** (Musgrave et al. 2020): R_q = number of relevant items for q;
  AP@R = (1/R_q) sum_{i<=R_q} rel_i * P@i. Chance (exact expectation over random
  permutations of N = n-1 items): E[AP@R] = (H_R + (R-1)(R-H_R)/(N-1)) / N, H_R the
  R-th harmonic number.
* **NDCG@k** with Jaccard gain g_j = |L_q & L_j| / |L_q | L_j|, discount 1/log2(rank+1),
  normalised by the ideal DCG over all others. Chance: every position has expected gain
  mean_j(g_j), so E[DCG@k] = mean gain * sum of the k discounts.
* **Per-finding P@k** (radsim's definition): for finding f, the queries are the items
  having f, and a neighbour counts when it also has f (not merely any shared label);
  findings present on fewer than 2 items are left out. Chance = (count_f - 1)/(n - 1).
* **Normal AUC**: each labelled query's score is the fraction of its k (10) neighbours
  with `no_finding`; ROC AUC of that score against the query's own `no_finding`. Its chance is
  not 0.5: leaving the query out gives a normal query one normal neighbour fewer to find, so
  the AUC is 0 by construction at n <= k + 1 and below 0.5 at small n. Its chance is measured
  by permutation (radsim.evaluation.nulls), as every metric's interval is.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from .labelindex import LabelIndex
from .labelsets import as_label_matrix, discounts, map_at_r_expected, mean_or_nan
from .retrieval import DEFAULT_K, NORMAL_INDEX, RetrievalSpec, retrieval_scores

# ----------------------------------------------------------- one-metric conveniences
# `kw` goes to retrieval_scores (metric, queries, chunk_size); each asks its spec for one metric alone
_ALONE = RetrievalSpec(ks=(), ndcg_ks=(), finding_k=None, normal_index=None, with_map=False)


def precision_at_k(embeddings: np.ndarray, labels: np.ndarray, k: int = DEFAULT_K, **kw) -> float:
    s = retrieval_scores(embeddings, labels, replace(_ALONE, ks=(k,)), **kw)
    return s.precision_at_k[k]


def map_at_r(embeddings: np.ndarray, labels: np.ndarray, **kw) -> float:
    s = retrieval_scores(embeddings, labels, replace(_ALONE, with_map=True), **kw)
    return float(s.map_at_r)


def ndcg_at_k(embeddings: np.ndarray, labels: np.ndarray, k: int = DEFAULT_K, **kw) -> float:
    s = retrieval_scores(embeddings, labels, replace(_ALONE, ndcg_ks=(k,)), **kw)
    return s.ndcg_at_k[k]


def finding_precision_at_k(embeddings: np.ndarray, labels: np.ndarray, k: int = DEFAULT_K,
                           finding_names: Sequence[str] | None = None, **kw) -> dict[str, float]:
    names = tuple(finding_names) if finding_names is not None else None
    s = retrieval_scores(embeddings, labels, replace(_ALONE, finding_k=k, finding_names=names), **kw)
    return s.finding_precision


def normal_auc(embeddings: np.ndarray, labels: np.ndarray, k: int = DEFAULT_K, normal_index: int = NORMAL_INDEX,
               **kw) -> float:
    s = retrieval_scores(embeddings, labels, replace(_ALONE, normal_index=normal_index, normal_k=k), **kw)
    return float(s.normal_auc)


# -------------------------------------------------------------- chance from labels only
def _scored(index: LabelIndex) -> tuple[np.ndarray, np.ndarray]:
    """(set id, R) of each scored query: labelled, with >= 1 relevant other."""
    sets = index.item_set
    r = index.relevant[sets]
    ok = (index.size[sets] > 0) & (r > 0)
    return sets[ok], r[ok]


def precision_at_k_chance(labels: np.ndarray) -> float:
    """Expected P@k under random ranking: mean over scored queries of R_q / (n-1)."""
    index = LabelIndex.build(labels)
    _, r = _scored(index)
    return float((r / (index.n_items - 1)).mean()) if r.size else float("nan")


def map_at_r_chance(labels: np.ndarray) -> float:
    """Expected mAP@R under random ranking (exact, see module docstring)."""
    index = LabelIndex.build(labels)
    _, r = _scored(index)
    return float(map_at_r_expected(r, index.n_items - 1).mean()) if r.size else float("nan")


def ndcg_at_k_chance(labels: np.ndarray, k: int = DEFAULT_K) -> float:
    """Expected NDCG@k (Jaccard gain) under random ranking."""
    index = LabelIndex.build(labels)
    kk = min(k, index.n_items - 1)
    sets, _ = _scored(index)
    ideal = index.ideal_dcg(kk)[sets]
    ok = ideal > 0
    chance = index.mean_gain[sets][ok] * discounts(kk).sum() / ideal[ok]
    return mean_or_nan(float(chance.sum()), int(ok.sum()))


def finding_precision_chance(labels: np.ndarray, finding_names: Sequence[str] | None = None) -> dict[str, float]:
    """Expected per-finding P@k under random ranking: (count_f - 1)/(n - 1), findings with count >= 2."""
    lab = as_label_matrix(labels)
    names = list(finding_names) if finding_names is not None else [str(i) for i in range(lab.shape[1])]
    counts = lab.sum(0)
    return {names[j]: float((counts[j] - 1) / (lab.shape[0] - 1)) for j in range(lab.shape[1]) if counts[j] >= 2}
