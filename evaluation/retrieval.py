"""Every retrieval metric of an embedding in one chunked pass over the query x gallery scores (DESIGN §9).

Leave-one-out throughout: a query never retrieves itself. Each metric is one small method of an
accumulator that sees every chunk of queries once; `retrieval_scores` drives it. numpy only.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .labelsets import as_label_matrix, discounts, map_at_r_expected, mean_or_nan, roc_auc
from .neighbours import Metric, as_matrix, full_ranking, score_chunks, top_k


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


@dataclass
class _Chunk:
    """One chunk of queries: their relevance to every item and their top neighbours."""

    qi: np.ndarray  # item index of each query
    inter: np.ndarray  # shared findings with every item (the query's own column zeroed)
    rel: np.ndarray  # shares a finding with the item
    r: np.ndarray  # relevant items per query
    labelled: np.ndarray
    valid: np.ndarray  # labelled and with at least one relevant item
    top: np.ndarray  # nearest neighbours, best first
    order: np.ndarray | None  # the full ranking, when mAP@R needs it


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
    lab = as_label_matrix(labels, n)
    names = list(finding_names) if finding_names is not None else [str(i) for i in range(lab.shape[1])]
    if len(names) != lab.shape[1]:
        raise ValueError(f"{len(names)} finding names for {lab.shape[1]} label columns")
    acc = _Accumulator(lab, names, tuple(ks), tuple(ndcg_ks), finding_k, normal_index, normal_k, with_map, per_query)
    for qi, scores in score_chunks(emb, metric, queries, chunk_size):
        acc.add(qi, scores)
    return acc.result()


class _Accumulator:
    """Sums of every metric over the chunks, and the per-query values when they are kept."""

    def __init__(self, lab: np.ndarray, names: list[str], ks: tuple[int, ...], ndcg_ks: tuple[int, ...],
                 finding_k: int | None, normal_index: int | None, normal_k: int, with_map: bool, per_query: bool):
        self.lab, self.names, self.ks, self.ndcg_ks = lab, names, ks, ndcg_ks
        self.finding_k, self.normal_index, self.normal_k = finding_k, normal_index, normal_k
        self.with_map, self.per_query = with_map, per_query
        self.n = lab.shape[0]
        self.others = self.n - 1
        self.kmax = min(max([*ks, *ndcg_ks, finding_k or 1, normal_k if normal_index is not None else 1]),
                        self.others)
        self.lab_f = lab.astype(np.float32)
        self.set_size = self.lab_f.sum(1)
        self.counts = lab.sum(0)
        self.p_sum = {k: 0.0 for k in ks}
        self.p_chance_sum = self.map_sum = self.map_chance_sum = 0.0
        self.nd_sum = {k: 0.0 for k in ndcg_ks}
        self.nd_chance_sum = {k: 0.0 for k in ndcg_ks}
        self.f_hits = np.zeros(lab.shape[1])
        self.f_queries = np.zeros(lab.shape[1], dtype=np.int64)
        self.n_valid = self.n_total = 0
        self.votes: list[np.ndarray] = []
        self.truths: list[np.ndarray] = []
        self.keep: dict[str, list[np.ndarray]] = {
            "items": [], "chance": [], "ap": [], "ap_chance": [], "vote_items": [],
            **{f"p{k}": [] for k in ks}, **{f"nd{k}": [] for k in ndcg_ks}, **{f"ndi{k}": [] for k in ndcg_ks}}

    def _kept(self, name: str, values: np.ndarray) -> None:
        if self.per_query:
            self.keep[name].append(values)

    def add(self, qi: np.ndarray, scores: np.ndarray) -> None:
        inter = self.lab_f[qi] @ self.lab_f.T
        inter[np.arange(len(qi)), qi] = 0.0
        rel = inter > 0
        r = rel.sum(1)
        labelled = self.set_size[qi] > 0
        order = full_ranking(scores) if self.with_map else None
        top = order[:, :self.kmax] if order is not None else top_k(scores, self.kmax)
        chunk = _Chunk(qi, inter, rel, r, labelled, labelled & (r > 0), top, order)
        self.n_total += len(qi)
        self.n_valid += int(chunk.valid.sum())
        self._precision(chunk)
        if self.with_map and chunk.valid.any():
            self._map(chunk)
        if self.ndcg_ks:
            self._ndcg(chunk)
        if self.finding_k:
            self._findings(chunk)
        if self.normal_index is not None:
            self._normal(chunk)

    def _precision(self, c: _Chunk) -> None:
        top_rel = np.take_along_axis(c.rel, c.top, axis=1)
        for k in self.ks:
            kk = min(k, self.others)
            pk = (top_rel[:, :kk].sum(1) / kk)[c.valid]
            self.p_sum[k] += float(pk.sum())
            self._kept(f"p{k}", pk)
        chance = c.r[c.valid] / self.others
        self.p_chance_sum += float(chance.sum())
        self._kept("items", c.qi[c.valid])
        self._kept("chance", chance)

    def _map(self, c: _Chunk) -> None:
        assert c.order is not None
        r_max = int(c.r[c.valid].max())
        rs = np.take_along_axis(c.rel, c.order[:, :r_max], axis=1).astype(np.float64)
        prec = np.cumsum(rs, axis=1) / np.arange(1, r_max + 1)
        within = np.arange(r_max)[None, :] < c.r[:, None]
        ap = (rs * prec * within).sum(1) / np.maximum(c.r, 1)
        self.map_sum += float(ap[c.valid].sum())
        expected = map_at_r_expected(c.r[c.valid], self.others)
        self.map_chance_sum += float(expected.sum())
        self._kept("ap", ap[c.valid])
        self._kept("ap_chance", expected)

    def _ndcg(self, c: _Chunk) -> None:
        union = self.set_size[c.qi][:, None] + self.set_size[None, :] - c.inter
        gain = np.divide(c.inter, union, out=np.zeros_like(c.inter), where=union > 0)
        gain[np.arange(len(c.qi)), c.qi] = 0.0
        mean_gain = gain.sum(1) / self.others
        for k in self.ndcg_ks:
            kk = min(k, self.others)
            disc = discounts(kk)
            dcg = (np.take_along_axis(gain, c.top[:, :kk], axis=1) * disc).sum(1)
            best = -np.partition(-gain, kk - 1, axis=1)[:, :kk]  # kk <= n-1 < n
            idcg = (-np.sort(-best, axis=1) * disc).sum(1)
            ok = c.valid & (idcg > 0)
            nd = dcg[ok] / idcg[ok]
            self.nd_sum[k] += float(nd.sum())
            self._kept(f"nd{k}", nd)
            self._kept(f"ndi{k}", c.qi[ok])
            self.nd_chance_sum[k] += float((mean_gain[ok] * disc.sum() / idcg[ok]).sum())

    def _findings(self, c: _Chunk) -> None:
        fk = min(self.finding_k or 1, self.others)
        frac = self.lab[c.top[:, :fk]].mean(1)  # (c, F): share of neighbours having each finding
        has = self.lab[c.qi] & (self.counts >= 2)[None, :]
        self.f_hits += (frac * has).sum(0)
        self.f_queries += has.sum(0)

    def _normal(self, c: _Chunk) -> None:
        nk = min(self.normal_k, self.others)
        self.votes.append(self.lab_f[c.top[:, :nk], self.normal_index].mean(1)[c.labelled])
        self.truths.append(self.lab[c.qi, self.normal_index][c.labelled])
        self._kept("vote_items", c.qi[c.labelled])

    def result(self) -> RetrievalScores:
        n_valid = self.n_valid
        out = RetrievalScores(n_items=self.n, n_queries=n_valid, n_excluded=self.n_total - n_valid)
        for k in self.ks:
            out.precision_at_k[k] = mean_or_nan(self.p_sum[k], n_valid)
            out.precision_at_k_chance[k] = mean_or_nan(self.p_chance_sum, n_valid)
        if self.with_map:
            out.map_at_r = mean_or_nan(self.map_sum, n_valid)
            out.map_at_r_chance = mean_or_nan(self.map_chance_sum, n_valid)
        for k in self.ndcg_ks:
            out.ndcg_at_k[k] = mean_or_nan(self.nd_sum[k], n_valid)
            out.ndcg_at_k_chance[k] = mean_or_nan(self.nd_chance_sum[k], n_valid)
        if self.finding_k:
            out.finding_k = self.finding_k
            for j, name in enumerate(self.names):
                if self.f_queries[j]:
                    out.finding_precision[name] = float(self.f_hits[j] / self.f_queries[j])
                    out.finding_precision_chance[name] = float((self.counts[j] - 1) / self.others)
                    out.finding_queries[name] = int(self.f_queries[j])
        if self.normal_index is not None:
            out.normal_k = self.normal_k
            v = np.concatenate(self.votes) if self.votes else np.empty(0)
            t = np.concatenate(self.truths) if self.truths else np.empty(0, bool)
            out.normal_auc = roc_auc(v, t)
            if self.per_query:
                out.vote_items, out.votes, out.vote_truth = _cat(self.keep["vote_items"], np.int64), v, t
        if self.per_query:
            self._per_query(out)
        return out

    def _per_query(self, out: RetrievalScores) -> None:
        keep = self.keep
        out.query_items = _cat(keep["items"], np.int64)
        out.query_precision = {k: _cat(keep[f"p{k}"]) for k in self.ks}
        out.query_precision_chance = _cat(keep["chance"])
        if self.with_map:
            out.query_ap, out.query_ap_chance = _cat(keep["ap"]), _cat(keep["ap_chance"])
        out.query_ndcg = {k: _cat(keep[f"nd{k}"]) for k in self.ndcg_ks}
        out.ndcg_items = {k: _cat(keep[f"ndi{k}"], np.int64) for k in self.ndcg_ks}


def _cat(parts: list[np.ndarray], dtype: Any = np.float64) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.empty(0, dtype)
