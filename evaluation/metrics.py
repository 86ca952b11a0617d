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
* **Normal AUC**: each labelled query's score is the fraction of its k = 10 neighbours
  with `no_finding`; ROC AUC of that score against the query's own `no_finding`. Chance 0.5.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .neighbours import Metric, as_matrix, full_ranking, score_chunks, top_k


# ----------------------------------------------------------------------------- labels
def label_sets(values: np.ndarray, uncertain_positive: bool = False) -> np.ndarray:
    """Multi-hot bool matrix from CheXpert-style values (1 present, 0, -1 uncertain, NaN/None).

    Already-boolean or 0/1 matrices pass through unchanged.
    """
    arr = np.asarray(values)
    if arr.dtype == object:
        arr = np.array([[np.nan if v is None else v for v in row] for row in arr], dtype=np.float64)
    arr = arr.astype(np.float64)
    if arr.ndim != 2:
        raise ValueError(f"labels must be a 2-D matrix (items x findings), got shape {arr.shape}")
    out = arr == 1
    if uncertain_positive:
        out |= arr == -1
    return out


def _labels(labels: np.ndarray, n: int | None = None) -> np.ndarray:
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


# ----------------------------------------------------------------------------- scores
@dataclass
class RetrievalScores:
    """Every retrieval metric of one embedding matrix, with its chance level."""

    n_items: int
    n_queries: int
    n_excluded: int
    precision_at_k: dict[int, float] = field(default_factory=dict)
    precision_at_k_chance: dict[int, float] = field(default_factory=dict)
    map_at_r: float | None = None
    map_at_r_chance: float | None = None
    ndcg_at_k: dict[int, float] = field(default_factory=dict)
    ndcg_at_k_chance: dict[int, float] = field(default_factory=dict)
    finding_k: int = 10
    finding_precision: dict[str, float] = field(default_factory=dict)
    finding_precision_chance: dict[str, float] = field(default_factory=dict)
    finding_queries: dict[str, int] = field(default_factory=dict)
    normal_k: int = 10
    normal_auc: float | None = None
    # per-query values, for intervals (radsim.evaluation.intervals); filled with `per_query=True`
    query_items: np.ndarray | None = None  # item index of each valid query
    query_precision: dict[int, np.ndarray] = field(default_factory=dict)
    query_precision_chance: np.ndarray | None = None
    query_ap: np.ndarray | None = None
    query_ap_chance: np.ndarray | None = None
    query_ndcg: dict[int, np.ndarray] = field(default_factory=dict)  # NDCG@k per query (its own valid set)
    ndcg_items: dict[int, np.ndarray] = field(default_factory=dict)
    vote_items: np.ndarray | None = None  # item index of each labelled query in the normal AUC
    votes: np.ndarray | None = None
    vote_truth: np.ndarray | None = None


def _mean(total: float, count: int) -> float:
    return float(total / count) if count else float("nan")


def retrieval_scores(
    embeddings: np.ndarray,
    labels: np.ndarray,
    *,
    ks: Sequence[int] = (1, 5, 10),
    ndcg_ks: Sequence[int] = (10,),
    finding_k: int | None = 10,
    finding_names: Sequence[str] | None = None,
    normal_index: int | None = 0,
    normal_k: int = 10,
    with_map: bool = True,
    metric: Metric = "cosine",
    queries: np.ndarray | None = None,
    chunk_size: int | None = None,
    per_query: bool = False,
) -> RetrievalScores:
    """All retrieval metrics in one chunked pass over the query x gallery scores.

    `with_map=False` skips mAP@R, which needs a full sort per query (the costly part at
    100k items); `queries` restricts the queries (the gallery stays all items), e.g. to a
    seeded sample. `normal_index` is the `no_finding` column (None to skip the AUC).
    `per_query` keeps each query's values, from which intervals are resampled.
    """
    emb = as_matrix(embeddings)
    n = emb.shape[0]
    if n < 2:
        raise ValueError("need at least 2 items for leave-one-out retrieval")
    lab = _labels(labels, n)
    n_f = lab.shape[1]
    names = list(finding_names) if finding_names is not None else [str(i) for i in range(n_f)]
    if len(names) != n_f:
        raise ValueError(f"{len(names)} finding names for {n_f} label columns")
    others = n - 1
    kmax = min(max([*ks, *ndcg_ks, finding_k or 1, normal_k if normal_index is not None else 1]), others)
    lab_f = lab.astype(np.float32)
    set_size = lab_f.sum(1)
    counts = lab.sum(0)

    p_sum = {k: 0.0 for k in ks}
    p_chance_sum = 0.0
    map_sum = map_chance_sum = 0.0
    nd_sum = {k: 0.0 for k in ndcg_ks}
    nd_chance_sum = {k: 0.0 for k in ndcg_ks}
    f_hits = np.zeros(n_f)
    f_queries = np.zeros(n_f, dtype=np.int64)
    n_valid = n_total = 0
    votes: list[np.ndarray] = []
    truths: list[np.ndarray] = []
    keep: dict[str, list[np.ndarray]] = {"items": [], "chance": [], "ap": [], "ap_chance": [], "vote_items": [],
                                         **{f"p{k}": [] for k in ks}, **{f"nd{k}": [] for k in ndcg_ks},
                                         **{f"ndi{k}": [] for k in ndcg_ks}}

    for qi, scores in score_chunks(emb, metric, queries, chunk_size):
        rows = np.arange(len(qi))
        inter = lab_f[qi] @ lab_f.T
        inter[rows, qi] = 0.0
        rel = inter > 0
        r = rel.sum(1)
        labelled = set_size[qi] > 0
        valid = labelled & (r > 0)
        n_total += len(qi)
        n_valid += int(valid.sum())
        if with_map:
            order = full_ranking(scores)
            top = order[:, :kmax]
        else:
            top = top_k(scores, kmax)
        top_rel = np.take_along_axis(rel, top, axis=1)

        for k in ks:
            kk = min(k, others)
            pk = (top_rel[:, :kk].sum(1) / kk)[valid]
            p_sum[k] += float(pk.sum())
            if per_query:
                keep[f"p{k}"].append(pk)
        p_chance_sum += float((r[valid] / others).sum())
        if per_query:
            keep["items"].append(qi[valid])
            keep["chance"].append(r[valid] / others)

        if with_map and valid.any():
            r_max = int(r[valid].max())
            rs = np.take_along_axis(rel, order[:, :r_max], axis=1).astype(np.float64)
            prec = np.cumsum(rs, axis=1) / np.arange(1, r_max + 1)
            within = np.arange(r_max)[None, :] < r[:, None]
            ap = (rs * prec * within).sum(1) / np.maximum(r, 1)
            map_sum += float(ap[valid].sum())
            expected = map_at_r_expected(r[valid], others)
            map_chance_sum += float(expected.sum())
            if per_query:
                keep["ap"].append(ap[valid])
                keep["ap_chance"].append(expected)

        if ndcg_ks:
            union = set_size[qi][:, None] + set_size[None, :] - inter
            gain = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
            gain[rows, qi] = 0.0
            mean_gain = gain.sum(1) / others
            for k in ndcg_ks:
                kk = min(k, others)
                disc = discounts(kk)
                dcg = (np.take_along_axis(gain, top[:, :kk], axis=1) * disc).sum(1)
                best = -np.partition(-gain, kk - 1, axis=1)[:, :kk]  # kk <= n-1 < n
                idcg = (-np.sort(-best, axis=1) * disc).sum(1)
                ok = valid & (idcg > 0)
                nd_sum[k] += float((dcg[ok] / idcg[ok]).sum())
                if per_query:
                    keep[f"nd{k}"].append(dcg[ok] / idcg[ok])
                    keep[f"ndi{k}"].append(qi[ok])
                nd_chance_sum[k] += float((mean_gain[ok] * disc.sum() / idcg[ok]).sum())

        if finding_k:
            fk = min(finding_k, others)
            frac = lab[top[:, :fk]].mean(1)  # (c, F): share of neighbours having each finding
            has = lab[qi] & (counts >= 2)[None, :]
            f_hits += (frac * has).sum(0)
            f_queries += has.sum(0)

        if normal_index is not None:
            nk = min(normal_k, others)
            votes.append(lab_f[top[:, :nk], normal_index].mean(1)[labelled])
            truths.append(lab[qi, normal_index][labelled])
            if per_query:
                keep["vote_items"].append(qi[labelled])

    out = RetrievalScores(n_items=n, n_queries=n_valid, n_excluded=n_total - n_valid)
    for k in ks:
        out.precision_at_k[k] = _mean(p_sum[k], n_valid)
        out.precision_at_k_chance[k] = _mean(p_chance_sum, n_valid)
    if with_map:
        out.map_at_r = _mean(map_sum, n_valid)
        out.map_at_r_chance = _mean(map_chance_sum, n_valid)
    for k in ndcg_ks:
        out.ndcg_at_k[k] = _mean(nd_sum[k], n_valid)
        out.ndcg_at_k_chance[k] = _mean(nd_chance_sum[k], n_valid)
    if finding_k:
        out.finding_k = finding_k
        for j, name in enumerate(names):
            if f_queries[j]:
                out.finding_precision[name] = float(f_hits[j] / f_queries[j])
                out.finding_precision_chance[name] = float((counts[j] - 1) / others)
                out.finding_queries[name] = int(f_queries[j])
    if normal_index is not None:
        out.normal_k = normal_k
        v = np.concatenate(votes) if votes else np.empty(0)
        t = np.concatenate(truths) if truths else np.empty(0, bool)
        out.normal_auc = roc_auc(v, t)
        if per_query:
            out.vote_items, out.votes, out.vote_truth = _cat(keep["vote_items"], np.int64), v, t
    if per_query:
        out.query_items = _cat(keep["items"], np.int64)
        out.query_precision = {k: _cat(keep[f"p{k}"]) for k in ks}
        out.query_precision_chance = _cat(keep["chance"])
        if with_map:
            out.query_ap, out.query_ap_chance = _cat(keep["ap"]), _cat(keep["ap_chance"])
        out.query_ndcg = {k: _cat(keep[f"nd{k}"]) for k in ndcg_ks}
        out.ndcg_items = {k: _cat(keep[f"ndi{k}"], np.int64) for k in ndcg_ks}
    return out


def _cat(parts: list[np.ndarray], dtype: Any = np.float64) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.empty(0, dtype)


# ----------------------------------------------------------- one-metric conveniences
def precision_at_k(embeddings: np.ndarray, labels: np.ndarray, k: int = 10, **kw) -> float:
    s = retrieval_scores(embeddings, labels, ks=(k,), ndcg_ks=(), finding_k=None, normal_index=None,
                         with_map=False, **kw)
    return s.precision_at_k[k]


def map_at_r(embeddings: np.ndarray, labels: np.ndarray, **kw) -> float:
    s = retrieval_scores(embeddings, labels, ks=(), ndcg_ks=(), finding_k=None, normal_index=None,
                         with_map=True, **kw)
    return float(s.map_at_r)


def ndcg_at_k(embeddings: np.ndarray, labels: np.ndarray, k: int = 10, **kw) -> float:
    s = retrieval_scores(embeddings, labels, ks=(), ndcg_ks=(k,), finding_k=None, normal_index=None,
                         with_map=False, **kw)
    return s.ndcg_at_k[k]


def finding_precision_at_k(embeddings: np.ndarray, labels: np.ndarray, k: int = 10,
                           finding_names: Sequence[str] | None = None, **kw) -> dict[str, float]:
    s = retrieval_scores(embeddings, labels, ks=(), ndcg_ks=(), finding_k=k, finding_names=finding_names,
                         normal_index=None, with_map=False, **kw)
    return s.finding_precision


def normal_auc(embeddings: np.ndarray, labels: np.ndarray, k: int = 10, normal_index: int = 0, **kw) -> float:
    s = retrieval_scores(embeddings, labels, ks=(), ndcg_ks=(), finding_k=None, normal_index=normal_index,
                         normal_k=k, with_map=False, **kw)
    return float(s.normal_auc)


# -------------------------------------------------------------- chance from labels only
def _label_chunks(lab: np.ndarray, chunk_size: int | None = None):
    n = lab.shape[0]
    step = chunk_size or max(1, min(n, 16_000_000 // max(n, 1)))
    lab_f = lab.astype(np.float32)
    for start in range(0, n, step):
        qi = np.arange(start, min(n, start + step))
        inter = lab_f[qi] @ lab_f.T
        inter[np.arange(len(qi)), qi] = 0.0
        yield qi, inter


def _valid_r(lab: np.ndarray) -> np.ndarray:
    """R per scored query (labelled, >= 1 relevant other)."""
    rs = []
    for qi, inter in _label_chunks(lab):
        r = (inter > 0).sum(1)
        rs.append(r[(lab[qi].sum(1) > 0) & (r > 0)])
    return np.concatenate(rs)


def precision_at_k_chance(labels: np.ndarray) -> float:
    """Expected P@k under random ranking: mean over scored queries of R_q / (n-1)."""
    lab = _labels(labels)
    r = _valid_r(lab)
    return float((r / (lab.shape[0] - 1)).mean()) if r.size else float("nan")


def map_at_r_chance(labels: np.ndarray) -> float:
    """Expected mAP@R under random ranking (exact, see module docstring)."""
    lab = _labels(labels)
    r = _valid_r(lab)
    return float(map_at_r_expected(r, lab.shape[0] - 1).mean()) if r.size else float("nan")


def ndcg_at_k_chance(labels: np.ndarray, k: int = 10) -> float:
    """Expected NDCG@k (Jaccard gain) under random ranking."""
    lab = _labels(labels)
    n = lab.shape[0]
    kk = min(k, n - 1)
    disc = discounts(kk)
    size = lab.sum(1).astype(np.float32)
    total, count = 0.0, 0
    for qi, inter in _label_chunks(lab):
        union = size[qi][:, None] + size[None, :] - inter
        gain = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        gain[np.arange(len(qi)), qi] = 0.0
        idcg = (-np.sort(-gain, axis=1)[:, :kk] * disc).sum(1)
        ok = (size[qi] > 0) & (idcg > 0)
        total += float((gain.sum(1)[ok] / (n - 1) * disc.sum() / idcg[ok]).sum())
        count += int(ok.sum())
    return _mean(total, count)


def finding_precision_chance(labels: np.ndarray, finding_names: Sequence[str] | None = None) -> dict[str, float]:
    """Expected per-finding P@k under random ranking: (count_f - 1)/(n - 1), findings with count >= 2."""
    lab = _labels(labels)
    names = list(finding_names) if finding_names is not None else [str(i) for i in range(lab.shape[1])]
    counts = lab.sum(0)
    return {names[j]: float((counts[j] - 1) / (lab.shape[0] - 1)) for j in range(lab.shape[1]) if counts[j] >= 2}
