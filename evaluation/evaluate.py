"""One call from (embeddings, labels) to evaluation records, with chance and random baselines.

`random_value` is the same metric computed on seeded unit-norm Gaussian embeddings of the
same shape, so a reader sees at a glance how far a model is above both baselines.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .clustering import ClusterScores, cluster_scores
from .retrieval import RetrievalScores, retrieval_scores
from .neighbours import as_matrix, random_embeddings
from .intervals import DEFAULT_REPLICATES, Interval, cluster_intervals, retrieval_intervals
from .records import MetricRecord


def _ci(intervals: dict[str, Interval], name: str) -> dict[str, float | None]:
    i = intervals.get(name)
    return {"ci_low": i.low, "ci_high": i.high} if i is not None and i.defined else {}


def _retrieval_records(s: RetrievalScores, r: RetrievalScores | None, mv: str, split: str,
                       ci: dict[str, Interval]) -> list[MetricRecord]:
    out: list[MetricRecord] = []
    for k, v in s.precision_at_k.items():
        out.append(MetricRecord(mv, split, "precision_at_k", k, v, s.precision_at_k_chance[k],
                                r.precision_at_k[k] if r else None, **_ci(ci, f"precision_at_{k}")))
    if s.map_at_r is not None:
        out.append(MetricRecord(mv, split, "map_at_r", None, s.map_at_r, s.map_at_r_chance,
                                r.map_at_r if r else None, **_ci(ci, "map_at_r")))
    for k, v in s.ndcg_at_k.items():
        out.append(MetricRecord(mv, split, "ndcg_at_k", k, v, s.ndcg_at_k_chance[k], r.ndcg_at_k[k] if r else None,
                                **_ci(ci, f"ndcg_at_{k}")))
    for name, v in s.finding_precision.items():
        out.append(MetricRecord(mv, split, f"precision_at_k/{name}", s.finding_k, v,
                                s.finding_precision_chance[name], r.finding_precision.get(name) if r else None))
    if s.normal_auc is not None:
        out.append(MetricRecord(mv, split, "normal_auc", s.normal_k, s.normal_auc, 0.5, r.normal_auc if r else None,
                                **_ci(ci, "normal_auc")))
    return out


def _cluster_records(c: ClusterScores, r: ClusterScores | None, mv: str, split: str,
                     ci: dict[str, Interval]) -> list[MetricRecord]:
    return [
        MetricRecord(mv, split, "nmi", None, c.nmi, c.nmi_chance, r.nmi if r else None, clusters=c.n_clusters,
                     **_ci(ci, "nmi")),
        MetricRecord(mv, split, "purity", None, c.purity, c.purity_chance, r.purity if r else None,
                     clusters=c.n_clusters, **_ci(ci, "purity")),
    ]


def evaluate_embeddings(
    embeddings: np.ndarray,
    labels: np.ndarray,
    *,
    model_version: str,
    split: str,
    finding_names: Sequence[str] | None = None,
    ks: Sequence[int] = (1, 5, 10),
    ndcg_k: int = 10,
    knn_k: int = 10,
    normal_index: int | None = 0,
    with_map: bool = True,
    with_clustering: bool = True,
    with_random: bool = True,
    seed: int = 0,
    queries: np.ndarray | None = None,
    groups: Sequence[object] | None = None,
    replicates: int = DEFAULT_REPLICATES,
) -> list[MetricRecord]:
    """Records for P@k, mAP@R, NDCG@k, per-finding P@k, normal AUC, NMI and purity.

    With `groups` (each item's patient) the headline metrics carry 95% bootstrap intervals that
    resample patients (radsim.evaluation.intervals).
    """
    emb = as_matrix(embeddings)
    kw = dict(ks=ks, ndcg_ks=(ndcg_k,), finding_k=knn_k, finding_names=finding_names,
              normal_index=normal_index, normal_k=knn_k, with_map=with_map, queries=queries)
    scores = retrieval_scores(emb, labels, **kw, per_query=groups is not None)
    ci = retrieval_intervals(scores, groups, replicates=replicates, seed=seed) if groups is not None else {}
    rand_emb = random_embeddings(emb.shape[0], emb.shape[1], seed) if with_random else None
    rand = retrieval_scores(rand_emb, labels, **kw) if rand_emb is not None else None
    records = _retrieval_records(scores, rand, model_version, split, ci)
    if with_clustering:
        c = cluster_scores(emb, labels, seed=seed)
        cci = cluster_intervals(c, groups, replicates=max(100, replicates // 4), seed=seed) if groups is not None else {}
        rc = cluster_scores(rand_emb, labels, seed=seed) if rand_emb is not None else None
        records += _cluster_records(c, rc, model_version, split, cci)
    return records
