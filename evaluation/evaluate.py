"""One call from (embeddings, labels) to judged evaluation records (DESIGN §9).

Each metric gets its true null (label permutations that keep patients together, on the same
neighbours), a random-embedding baseline over several draws with its spread, and from those an
interval and a verdict (radsim.evaluation.judge), or "too few to judge" where the exams, patients
or classes cannot support one.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from .clustering import cluster_scores
from .config import DEFAULT_SEED
from .intervals import DEFAULT_REPLICATES, Interval, retrieval_intervals
from .judge import Judgement, MinimumSizes, judge, null_chance, too_few
from .labelindex import LabelIndex
from .neighbours import as_matrix, random_embeddings
from .nulls import DEFAULT_DRAWS, cluster_null, retrieval_null
from .records import MetricRecord
from .retrieval import (
    DEFAULT_K,
    DEFAULT_KS,
    NORMAL_INDEX,
    RetrievalScores,
    RetrievalSpec,
    complete_map,
    make_spec,
    rank_for,
    score_ranking,
)

#: random-embedding draws behind each random_value (their spread is random_sd)
RANDOM_DRAWS = 5


@dataclass(frozen=True)
class EvaluationOptions:
    """What to score and how hard to test it; the defaults are `radsim evaluate`'s, except `max_queries`.

    `max_queries` samples that many queries (seeded by `seed`; the gallery stays every item); None,
    the library's default, scores every item as a query (`radsim evaluate` passes EvalConfig's).
    """

    ks: tuple[int, ...] = DEFAULT_KS
    ndcg_k: int | None = DEFAULT_K
    knn_k: int = DEFAULT_K
    with_map: bool = True
    with_findings: bool = True
    with_clustering: bool = True
    random_draws: int = RANDOM_DRAWS
    null_draws: int = DEFAULT_DRAWS
    replicates: int = DEFAULT_REPLICATES
    seed: int = DEFAULT_SEED
    minimum: MinimumSizes = field(default_factory=MinimumSizes)
    max_queries: int | None = None

    def spec(self, finding_names: Sequence[str] | None, normal_index: int | None) -> RetrievalSpec:
        """The retrieval metrics these options ask for, on label columns so named."""
        return RetrievalSpec(self.ks, (self.ndcg_k,) if self.ndcg_k else (),
                             self.knn_k if self.with_findings else None,
                             tuple(finding_names) if finding_names is not None else None, normal_index, self.knn_k,
                             self.with_map)


@dataclass(frozen=True)
class _Subject:
    """What every record of one evaluation shares."""

    model_version: str
    split: str
    groups: np.ndarray  # each item's patient, as an integer
    n_items: int


def evaluate_embeddings(embeddings: np.ndarray, labels: np.ndarray, *, model_version: str, split: str,
                        finding_names: Sequence[str] | None = None, normal_index: int | None = NORMAL_INDEX,
                        groups: Sequence[object] | None = None,
                        options: EvaluationOptions = EvaluationOptions()) -> list[MetricRecord]:
    """Judged records for P@k, mAP@R, NDCG@k, per-finding P@k, the normal AUC, NMI and purity.

    `groups` gives each item's patient (every item its own without it): the bootstrap resamples
    patients and the permutations move patients' films together. `options.max_queries` restricts
    the queries to a seeded sample (the gallery stays every item).
    """
    emb = as_matrix(embeddings)
    index = LabelIndex.build(labels)
    spec = make_spec(index, options.spec(finding_names, normal_index))
    item_groups = list(groups) if groups is not None else list(range(emb.shape[0]))
    subject = _Subject(model_version, split, np.unique([str(g) for g in item_groups], return_inverse=True)[1],
                       emb.shape[0])
    queries = sample_queries(emb.shape[0], options.max_queries, options.seed)
    records = _retrieval(emb, index, spec, item_groups, queries, options, subject)
    if options.with_clustering:
        records += _clustering(emb, index.lab, item_groups, options, subject)
    return records


def sample_queries(n: int, max_queries: int | None, seed: int) -> np.ndarray | None:
    """A seeded, sorted sample of `max_queries` query items out of `n`; None (every item) when all fit."""
    if not max_queries or n <= max_queries:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=max_queries, replace=False))


def _scores(emb: np.ndarray, index: LabelIndex, spec: RetrievalSpec, queries: np.ndarray | None,
            per_query: bool = False):
    ranking = rank_for(emb, index, spec, queries=queries)
    scores = score_ranking(ranking, index, spec, per_query=per_query)
    complete_map(scores, emb, index, spec, queries, per_query)
    return ranking, scores


def _retrieval(emb: np.ndarray, index: LabelIndex, spec: RetrievalSpec, groups: list, queries: np.ndarray | None,
               options: EvaluationOptions, subject: _Subject) -> list[MetricRecord]:
    ranking, scores = _scores(emb, index, spec, queries, per_query=True)
    null = retrieval_null(ranking, index, spec, groups, draws=options.null_draws, seed=options.seed)
    lacking = set(scores.values()) - set(null)  # mAP@R past its budget: the bootstrap is its interval
    boot = retrieval_intervals(scores, groups, replicates=options.replicates, seed=options.seed) if lacking else {}
    randoms = [_scores(random_embeddings(*emb.shape, seed=options.seed + 1 + d), index, spec, queries)[1].values()
               for d in range(options.random_draws)]
    out = []
    for name, value in scores.values().items():
        sizes = _sizes(scores, name, subject)
        reason = _too_few_reason(scores, name, sizes, subject, options.minimum)
        exact = _exact_chance(scores, name)
        chance = null_chance(null.get(name)) if name in null else exact
        verdict = too_few(reason) if reason else judge(value, chance, null.get(name), boot.get(name))
        out.append(_record(subject, record_key(scores, name), value, chance, [r.get(name) for r in randoms],
                           verdict, sizes))
    return out


def _clustering(emb: np.ndarray, lab: np.ndarray, groups: list, options: EvaluationOptions,
                subject: _Subject) -> list[MetricRecord]:
    c = cluster_scores(emb, lab, seed=options.seed)
    randoms = [cluster_scores(random_embeddings(*emb.shape, seed=options.seed + 1 + d), lab, seed=options.seed)
               for d in range(options.random_draws)]
    null = cluster_null(c, groups, draws=options.null_draws, seed=options.seed)
    patients = len(set(subject.groups[c.items].tolist())) if c.items is not None else 0
    sizes = (c.n_items, patients)
    out = []
    for name, value in (("nmi", c.nmi), ("purity", c.purity)):
        chance = null_chance(null.get(name))
        if not null:
            verdict = too_few("fewer than 2 label-set classes with more items than classes")
        elif patients < options.minimum.patients:
            verdict = too_few(f"{patients} patients, fewer than {options.minimum.patients}")
        else:
            verdict = judge(value, chance, null[name], None)
        out.append(replace(_record(subject, (name, None), value, chance, [getattr(r, name) for r in randoms],
                                   verdict, sizes), clusters=c.n_clusters))
    return out


def _sizes(scores: RetrievalScores, name: str, subject: _Subject) -> tuple[int, int]:
    """(queries, patients) a metric's value rests on."""
    kept = scores.votes if name == "normal_auc" else scores.per_query.get(name)
    if kept is None:
        return scores.n_queries, 0
    return int(kept.items.size), int(np.unique(subject.groups[kept.items]).size)


def _too_few_reason(scores: RetrievalScores, name: str, sizes: tuple[int, int], subject: _Subject,
                    minimum: MinimumSizes) -> str | None:
    """Why a retrieval metric is too few to judge at this size, or None."""
    k = record_key(scores, name)[1]
    if k is not None and subject.n_items - 1 <= k:
        return (
            f"k = {k} needs more than {k + 1} exams (there are {subject.n_items}): "
            "every exam's neighbours are all the others"
        )
    queries, patients = sizes
    if name == "normal_auc" and min(scores.normal_counts) < minimum.class_size:
        normal, abnormal = scores.normal_counts
        return f"{normal} normal and {abnormal} abnormal exams; each class needs {minimum.class_size}"
    if patients < minimum.patients:
        return f"{patients} patients, fewer than {minimum.patients}"
    return None


def _exact_chance(scores: RetrievalScores, name: str) -> float | None:
    """The metric's expectation under a random ranking, where one is known in closed form."""
    if name.startswith("precision_at_"):
        return scores.precision_at_k_chance[int(name.rsplit("_", 1)[1])]
    if name.startswith("ndcg_at_"):
        return scores.ndcg_at_k_chance[int(name.rsplit("_", 1)[1])]
    if name.startswith("finding/"):
        return scores.finding_precision_chance[name.split("/", 1)[1]]
    return scores.map_at_r_chance if name == "map_at_r" else None


def record_key(scores: RetrievalScores, name: str) -> tuple[str, int | None]:
    """(metric, k) of the evaluation contract for a name of `RetrievalScores.values()`."""
    if name.startswith("finding/"):
        return f"precision_at_k/{name.split('/', 1)[1]}", scores.finding_k
    if name.startswith(("precision_at_", "ndcg_at_")):
        stem, k = name.rsplit("_", 1)
        return f"{stem}_k", int(k)
    return name, scores.normal_k if name == "normal_auc" else None


def _record(subject: _Subject, key: tuple[str, int | None], value: float, chance: float | None,
            randoms: list[float | None], verdict: Judgement, sizes: tuple[int, int]) -> MetricRecord:
    finite = np.array([r for r in randoms if r is not None and np.isfinite(r)], dtype=np.float64)
    return MetricRecord(subject.model_version, subject.split, key[0], key[1], float(value), chance,
                        float(finite.mean()) if finite.size else None, verdict.ci_low, verdict.ci_high,
                        verdict=verdict.verdict, n_queries=sizes[0], n_patients=sizes[1],
                        random_sd=float(finite.std(ddof=1)) if finite.size > 1 else None, note=verdict.note)


__all__ = ["EvaluationOptions", "Interval", "evaluate_embeddings"]
