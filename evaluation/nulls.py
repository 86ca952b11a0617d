"""Each metric's true null: its distribution when labels and embeddings are unrelated (DESIGN §9).

Why not a textbook constant: at the sizes a site starts with, "chance" depends on n, k, the label
sets and the patients. A leave-one-out kNN vote's AUC is 0 by construction at n <= k + 1 and
about 0.40 at n = 26; P@10 over 11 others is nearly fixed whatever the embedding. So the null is
measured on the same exams: the labels are moved among them (`draws` times) while every ranking
stays, and each metric is scored again on the same neighbours.

Patients stay together: the items are laid out patient by patient, the patients' blocks are
shuffled, and item i takes the labels of whichever item the shuffle put in its place. A patient's
films thus move (mostly) as one block, keeping the within-patient likeness of labels that the
bootstrap also respects, and the label multiset never changes, so exact per-set quantities
(radsim.evaluation.labelindex) stay valid.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace

import numpy as np

from .clustering import ClusterScores, contingency_scores
from .config import DEFAULT_SEED
from .labelindex import LabelIndex
from .ranking import Ranking
from .retrieval import RetrievalSpec, score_ranking

#: label permutations per evaluation: the 2.5% and 97.5% quantiles then rest on 12 draws each side
DEFAULT_DRAWS = 500
#: fewest finite permutation draws whose 2.5% / 97.5% quantiles are worth reading
MIN_NULL_DRAWS = 40
#: (query, rank) relevance look-ups mAP@R's permutations may take in all (about 10 s here); mAP@R
#: needs each query's ranking as deep as its relevant items, so at a few thousand exams it gets
#: fewer draws, and none (its interval is then the bootstrap's) below MIN_NULL_DRAWS
MAP_NULL_BUDGET = 600_000_000


def patient_blocks(groups: Sequence[object] | None, n: int) -> list[np.ndarray]:
    """Item indices per patient, patients in order of first appearance (each item alone without groups)."""
    if groups is None:
        return [np.array([i]) for i in range(n)]
    if len(groups) != n:
        raise ValueError(f"{len(groups)} patient groups for {n} items")
    _, first, inverse = np.unique(np.asarray([str(g) for g in groups]), return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    members = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse, minlength=len(first)))
    by_group = np.split(members, bounds[:-1])
    return [by_group[g] for g in order]


def block_permutations(blocks: list[np.ndarray], draws: int, seed: int) -> Iterator[np.ndarray]:
    """`draws` permutations of the items that move patients' blocks: perm[i] is whose labels item i takes."""
    receivers = np.concatenate(blocks) if blocks else np.empty(0, np.int64)
    rng = np.random.default_rng(seed)
    for _ in range(draws):
        donors = np.concatenate([blocks[b] for b in rng.permutation(len(blocks))]) if blocks else receivers
        perm = np.empty(receivers.size, dtype=np.int64)
        perm[receivers] = donors
        yield perm


def retrieval_null(ranking: Ranking, index: LabelIndex, spec: RetrievalSpec, groups: Sequence[object] | None,
                   *, draws: int = DEFAULT_DRAWS, seed: int = DEFAULT_SEED) -> dict[str, np.ndarray]:
    """Each retrieval metric (named as RetrievalScores.values) over `draws` patient-block permutations."""
    blocks = patient_blocks(groups, index.n_items)
    map_draws = min(draws, MAP_NULL_BUDGET // max(1, ranking.queries.size * ranking.depth)) if spec.with_map else 0
    map_draws = map_draws if map_draws >= MIN_NULL_DRAWS else 0
    shallow = replace(spec, with_map=False)
    samples: dict[str, list[float]] = {}
    for b, perm in enumerate(block_permutations(blocks, draws, seed)):
        for name, value in (
            score_ranking(ranking, index, spec if b < map_draws else shallow, perm=perm).values().items()
        ):
            samples.setdefault(name, []).append(value)
    return {name: np.asarray(values, dtype=np.float64) for name, values in samples.items()}


def cluster_null(scores: ClusterScores, groups: Sequence[object] | None, *, draws: int = DEFAULT_DRAWS,
                 seed: int = DEFAULT_SEED) -> dict[str, np.ndarray]:
    """NMI and purity with the clustered items' classes permuted (patients kept together); the clusters stay."""
    if scores.items is None or scores.pred is None or scores.classes is None:
        return {}
    own = [groups[i] for i in scores.items] if groups is not None else None
    blocks = patient_blocks(own, len(scores.items))
    nmi, purity = [], []
    for perm in block_permutations(blocks, draws, seed):
        a, b = contingency_scores(scores.pred, scores.classes[perm])
        nmi.append(a)
        purity.append(b)
    return {"nmi": np.asarray(nmi), "purity": np.asarray(purity)}
