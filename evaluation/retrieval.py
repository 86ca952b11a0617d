"""Every retrieval metric of an embedding, scored on its ranking (DESIGN §9).

Leave-one-out throughout: a query never retrieves itself. The ranking is computed once
(radsim.evaluation.ranking); `score_ranking` then reads every metric off it for one assignment of
labels to items: the observed one, or a permutation of it (radsim.evaluation.nulls). Both go
through the same code, so a metric and its null can never disagree on a definition. numpy only.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .labelindex import LabelIndex
from .labelsets import discounts, map_at_r_expected, mean_or_nan, roc_auc
from .neighbours import DEFAULT_METRIC, Metric, as_matrix, score_chunks, top_k
from .ranking import Ranking, order_depth, rank, rank_chunk

#: the k of P@k's headline, NDCG@k, per-finding P@k and the normal AUC's kNN vote (radsim evaluate's)
DEFAULT_K = 10
#: the ks of P@k scored by default
DEFAULT_KS = (1, 5, DEFAULT_K)
#: the label column that is no_finding unless told otherwise (radsim's vocabulary puts it first)
NORMAL_INDEX = 0


@dataclass(frozen=True)
class RetrievalSpec:
    """Which retrieval metrics to score, at which k; the defaults are radsim evaluate's."""

    ks: tuple[int, ...] = DEFAULT_KS
    ndcg_ks: tuple[int, ...] = (DEFAULT_K,)
    finding_k: int | None = DEFAULT_K  # None: no per-finding P@k
    finding_names: tuple[str, ...] | None = None  # the label columns' names (default "0", "1", ...)
    normal_index: int | None = NORMAL_INDEX  # the no_finding column (None: no normal AUC)
    normal_k: int = DEFAULT_K
    with_map: bool = True

    @property
    def kmax(self) -> int:
        return max(
            [*self.ks, *self.ndcg_ks, self.finding_k or 1, self.normal_k if self.normal_index is not None else 1]
        )


@dataclass(frozen=True)
class QueryValues:
    """One metric's value per scored query, with the query's item index (what intervals resample)."""

    items: np.ndarray
    values: np.ndarray


@dataclass
class RetrievalScores:
    """Every retrieval metric of one embedding matrix, with its chance level (random ranking)."""

    n_items: int
    n_queries: int
    n_excluded: int
    precision_at_k: dict[int, float] = field(default_factory=dict)
    precision_at_k_chance: dict[int, float] = field(default_factory=dict)
    map_at_r: float | None = None
    map_at_r_chance: float | None = None
    ndcg_at_k: dict[int, float] = field(default_factory=dict)
    ndcg_at_k_chance: dict[int, float] = field(default_factory=dict)
    finding_k: int = DEFAULT_K
    finding_precision: dict[str, float] = field(default_factory=dict)
    finding_precision_chance: dict[str, float] = field(default_factory=dict)
    finding_queries: dict[str, int] = field(default_factory=dict)
    normal_k: int = DEFAULT_K
    normal_auc: float | None = None
    normal_counts: tuple[int, int] = (0, 0)  # labelled queries that are (normal, abnormal)
    # with per_query=True: each metric's per-query values, keyed like `values()`, for intervals
    per_query: dict[str, QueryValues] = field(default_factory=dict)
    votes: QueryValues | None = None  # the normal AUC's kNN votes ...
    vote_truth: np.ndarray | None = None  # ... and each voting query's own no_finding

    def values(self) -> dict[str, float]:
        """Every metric under one flat name: precision_at_10, map_at_r, ndcg_at_10, normal_auc, finding/<name>."""
        out = {f"precision_at_{k}": v for k, v in self.precision_at_k.items()}
        out.update({f"ndcg_at_{k}": v for k, v in self.ndcg_at_k.items()})
        out.update({f"finding/{name}": v for name, v in self.finding_precision.items()})
        if self.map_at_r is not None:
            out["map_at_r"] = self.map_at_r
        if self.normal_auc is not None:
            out["normal_auc"] = self.normal_auc
        return out


def retrieval_scores(embeddings: np.ndarray, labels: np.ndarray | LabelIndex, spec: RetrievalSpec = RetrievalSpec(),
                     *, metric: Metric = DEFAULT_METRIC, queries: np.ndarray | None = None,
                     chunk_size: int | None = None, per_query: bool = False) -> RetrievalScores:
    """All retrieval metrics of an embedding that `spec` asks for: its ranking (`rank_for`), then `score_ranking`.

    `queries` restricts the queries (the gallery stays all items), e.g. to a seeded sample;
    `spec.normal_index` is the `no_finding` column (None to skip the AUC); `per_query` keeps each
    query's values, from which intervals are resampled.
    """
    emb = as_matrix(embeddings)
    index = LabelIndex.build(labels) if not isinstance(labels, LabelIndex) else labels
    spec = make_spec(index, spec)
    ranking = rank_for(emb, index, spec, metric=metric, queries=queries, chunk_size=chunk_size)
    scores = score_ranking(ranking, index, spec, per_query=per_query)
    complete_map(scores, emb, index, spec, queries, per_query, metric=metric, chunk_size=chunk_size)
    return scores


def make_spec(index: LabelIndex, spec: RetrievalSpec = RetrievalSpec()) -> RetrievalSpec:
    """`spec` for these labels: its ks as tuples and a name for every label column (checked against them)."""
    n_findings = index.lab.shape[1]
    names = tuple(spec.finding_names) if spec.finding_names is not None else tuple(str(i) for i in range(n_findings))
    if len(names) != n_findings:
        raise ValueError(f"{len(names)} finding names for {n_findings} label columns")
    return replace(spec, ks=tuple(spec.ks), ndcg_ks=tuple(spec.ndcg_ks), finding_names=names)


def rank_for(emb: np.ndarray, index: LabelIndex, spec: RetrievalSpec, *, metric: Metric = DEFAULT_METRIC,
             queries: np.ndarray | None = None, chunk_size: int | None = None) -> Ranking:
    """The ranking `spec` needs: to kmax, and as deep as any query's relevant items for mAP@R if that fits."""
    if emb.shape[0] != index.n_items:
        raise ValueError(f"labels have {index.n_items} rows but embeddings have {emb.shape[0]}")
    n_queries = emb.shape[0] if queries is None else len(queries)
    r_cap = int(index.relevant.max(initial=0)) if spec.with_map else 0
    return rank(emb, order_depth(n_queries, r_cap, spec.kmax), metric=metric, queries=queries, chunk_size=chunk_size)


def score_ranking(ranking: Ranking, index: LabelIndex, spec: RetrievalSpec, *, perm: np.ndarray | None = None,
                  per_query: bool = False) -> RetrievalScores:
    """Every metric of `spec` on a ranking, with item i holding the labels of item `perm[i]` (default: its own)."""
    owner = perm if perm is not None else np.arange(index.n_items)
    q = ranking.queries
    q_set = index.item_set[owner[q]]
    others = index.n_items - 1
    r = index.relevant[q_set]
    labelled = index.size[q_set] > 0
    valid = labelled & (r > 0)
    out = RetrievalScores(n_items=index.n_items, n_queries=int(valid.sum()), n_excluded=int((~valid).sum()))
    keep = _Keeper(out, q, per_query)
    kk_max = min(spec.kmax, others, ranking.depth)
    top_set = index.item_set[owner[ranking.neighbours[:, :kk_max]]]
    rel = index.shares(q_set[:, None], top_set)
    for k in spec.ks:
        kk = min(k, others)
        out.precision_at_k[k], out.precision_at_k_chance[k] = keep.mean(f"precision_at_{k}", rel[:, :kk].mean(1),
                                                                        r / others, valid)
    if spec.ndcg_ks:
        _ndcg(out, keep, index, spec, q_set, top_set, valid)
    if spec.with_map and ranking.depth >= min(int(r.max(initial=0)), others):
        ap = _ranked_average_precision(ranking, index, owner, q_set, r)
        out.map_at_r, out.map_at_r_chance = keep.mean("map_at_r", ap, map_at_r_expected(r, others), valid)
    if spec.finding_k:
        _findings(out, keep, index, spec, owner, q, ranking.neighbours)
    if spec.normal_index is not None:
        _normal(out, index, spec, owner, q, ranking.neighbours, labelled, per_query)
    return out


#: (query, rank) entries of AP@R worked on at once: bounds the float64 temporaries to ~100 MB
AP_CHUNK_ENTRIES = 4_000_000


def _ranked_average_precision(ranking: Ranking, index: LabelIndex, owner: np.ndarray, q_set: np.ndarray,
                              r: np.ndarray) -> np.ndarray:
    """AP@R of every query from its kept ranking, a chunk of queries at a time (memory bounded, not Q x depth)."""
    depth = max(1, min(int(r.max(initial=0)), ranking.depth))
    step = max(1, AP_CHUNK_ENTRIES // depth)
    out = np.empty(len(q_set))
    for start in range(0, len(q_set), step):
        rows = slice(start, start + step)
        deep = index.item_set[owner[ranking.neighbours[rows, :depth]]]
        out[rows] = average_precision(index.shares(q_set[rows, None], deep), r[rows])
    return out


def average_precision(rel: np.ndarray, r: np.ndarray) -> np.ndarray:
    """AP@R per query from its relevance in ranked order (depth >= R) and its R (Musgrave et al. 2020)."""
    depth = rel.shape[1]
    hits = np.cumsum(rel, axis=1)
    within = np.arange(depth)[None, :] < r[:, None]
    prec = hits / np.arange(1, depth + 1)
    return (rel * prec * within).sum(1) / np.maximum(r, 1)


class _Keeper:
    """Means over the scored queries, and the per-query values when intervals will need them."""

    def __init__(self, out: RetrievalScores, queries: np.ndarray, per_query: bool):
        self.out, self.queries, self.per_query = out, queries, per_query

    def mean(self, name: str, values: np.ndarray, chance: np.ndarray, ok: np.ndarray) -> tuple[float, float]:
        count = int(ok.sum())
        if self.per_query:
            self.out.per_query[name] = QueryValues(self.queries[ok], values[ok].astype(np.float64))
        return mean_or_nan(float(values[ok].sum()), count), mean_or_nan(float(chance[ok].sum()), count)


def _ndcg(out: RetrievalScores, keep: _Keeper, index: LabelIndex, spec: RetrievalSpec, q_set: np.ndarray,
          top_set: np.ndarray, valid: np.ndarray) -> None:
    gain = index.jaccard(q_set[:, None], top_set)
    for k in spec.ndcg_ks:
        kk = min(k, index.n_items - 1, top_set.shape[1])
        disc = discounts(kk)
        ideal = index.ideal_dcg(kk)[q_set]
        ok = valid & (ideal > 0)
        safe = np.where(ideal > 0, ideal, 1.0)
        dcg = (gain[:, :kk] * disc).sum(1)
        out.ndcg_at_k[k], out.ndcg_at_k_chance[k] = keep.mean(f"ndcg_at_{k}", dcg / safe,
                                                              index.mean_gain[q_set] * disc.sum() / safe, ok)


def _findings(out: RetrievalScores, keep: _Keeper, index: LabelIndex, spec: RetrievalSpec, owner: np.ndarray,
              q: np.ndarray, neighbours: np.ndarray) -> None:
    """Per-finding P@k: the queries having the finding, a neighbour counts when it has it too."""
    others = index.n_items - 1
    fk = min(spec.finding_k or 1, others)
    frac = index.lab[owner[neighbours[:, :fk]]].mean(1)  # (Q, F): share of neighbours having each finding
    has = index.lab[owner[q]]
    out.finding_k = spec.finding_k or out.finding_k
    for j, name in enumerate(spec.finding_names or ()):
        count = int(index.finding_counts[j])
        if count < 2 or not has[:, j].any():
            continue
        chance = np.full(len(q), (count - 1) / others)
        out.finding_precision[name], out.finding_precision_chance[name] = keep.mean(f"finding/{name}", frac[:, j],
                                                                                    chance, has[:, j])
        out.finding_queries[name] = int(has[:, j].sum())


def _normal(out: RetrievalScores, index: LabelIndex, spec: RetrievalSpec, owner: np.ndarray, q: np.ndarray,
            neighbours: np.ndarray, labelled: np.ndarray, per_query: bool) -> None:
    """The normal-vs-abnormal AUC of the kNN vote: the share of a query's k neighbours that are normal."""
    col = index.lab[:, spec.normal_index]
    nk = min(spec.normal_k, index.n_items - 1)
    votes = col[owner[neighbours[:, :nk]]].mean(1)[labelled]
    truth = col[owner[q]][labelled]
    out.normal_k = spec.normal_k
    out.normal_counts = (int(truth.sum()), int((~truth).sum()))
    out.normal_auc = roc_auc(votes, truth)
    if per_query:
        out.votes, out.vote_truth = QueryValues(q[labelled], votes), truth


def complete_map(out: RetrievalScores, emb: np.ndarray, index: LabelIndex, spec: RetrievalSpec,
                 queries: np.ndarray | None, per_query: bool, *, metric: Metric = DEFAULT_METRIC,
                 chunk_size: int | None = None) -> None:
    """mAP@R when the ranking was too deep to keep (radsim.evaluation.ranking): one chunk of queries at a time.

    Such an mAP@R has no permutation null: its interval is the bootstrap's alone.
    """
    if not spec.with_map or out.map_at_r is not None:
        return
    others = index.n_items - 1
    items, aps, chances = [], [], []
    for qi, scores in score_chunks(emb, metric, queries, rank_chunk(index.n_items, chunk_size)):
        q_set = index.item_set[qi]
        r = index.relevant[q_set]
        ok = (index.size[q_set] > 0) & (r > 0)
        depth = min(max(int(r.max(initial=0)), 1), others)
        order = top_k(scores, depth)[:, :depth]
        ap = average_precision(index.shares(q_set[:, None], index.item_set[order]), r)
        items.append(qi[ok])
        aps.append(ap[ok])
        chances.append(map_at_r_expected(r[ok], others))
    ap_all, chance_all = np.concatenate(aps), np.concatenate(chances)
    out.map_at_r, out.map_at_r_chance = mean_or_nan(float(ap_all.sum()), ap_all.size), \
        mean_or_nan(float(chance_all.sum()), chance_all.size)
    if per_query:
        out.per_query["map_at_r"] = QueryValues(np.concatenate(items), ap_all)
