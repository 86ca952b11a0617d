"""True nulls: label permutations that keep patients together, scored on the same neighbours."""
from __future__ import annotations

import numpy as np
import pytest

from radsim.evaluation import random_embeddings
from radsim.evaluation.clustering import cluster_scores
from radsim.evaluation.labelindex import LabelIndex
from radsim.evaluation.nulls import block_permutations, cluster_null, patient_blocks, retrieval_null
from radsim.evaluation.retrieval import RetrievalSpec, make_spec, rank_for, score_ranking


def _setup(n: int, seed: int = 0, findings: int = 4, dim: int = 8):
    rng = np.random.default_rng(seed)
    lab = rng.random((n, findings)) < 0.3
    lab[:, 0] = ~lab[:, 1:].any(1)  # no_finding exactly when nothing else
    emb = random_embeddings(n, dim, seed=seed + 1)
    index = LabelIndex.build(lab)
    spec = make_spec(index, RetrievalSpec(ks=(1, 5, 10), ndcg_ks=(10,), finding_k=10, normal_index=0, normal_k=10))
    return emb, index, spec, rank_for(emb, index, spec)


def test_patient_blocks_keep_a_patients_items_together_in_order_of_first_appearance():
    blocks = patient_blocks(["b", "a", "b", "c", "a"], 5)
    assert [b.tolist() for b in blocks] == [[0, 2], [1, 4], [3]]
    assert [b.tolist() for b in patient_blocks(None, 3)] == [[0], [1], [2]]
    with pytest.raises(ValueError, match="3 patient groups for 4 items"):
        patient_blocks(["a", "b", "c"], 4)


def test_block_permutations_are_permutations_that_move_equal_patients_as_whole_blocks():
    groups = [i // 3 for i in range(30)]  # ten patients of three films each
    blocks = patient_blocks(groups, 30)
    for perm in block_permutations(blocks, 20, seed=1):
        assert sorted(perm.tolist()) == list(range(30))
        for patient in range(10):  # every patient takes all its labels from one other patient
            donors = {groups[perm[i]] for i in range(30) if groups[i] == patient}
            assert len(donors) == 1
    first, again = next(block_permutations(blocks, 1, 7)), next(block_permutations(blocks, 1, 7))
    assert first.tolist() == again.tolist()  # seeded


def test_the_knn_vote_auc_has_its_true_null_not_one_half():
    # The figure: with random embeddings and k = 10, about 0.40 at n = 26, not 0.5.
    means = []
    for seed in range(4):
        _, index, spec, ranking = _setup(26, seed)
        means.append(retrieval_null(ranking, index, spec, None, draws=300, seed=seed)["normal_auc"].mean())
    assert 0.33 < np.mean(means) < 0.46


def test_at_n_at_most_k_plus_one_the_vote_auc_is_zero_whatever_the_labels():
    _, index, spec, ranking = _setup(11, 3)  # every query's 10 neighbours are all the others
    null = retrieval_null(ranking, index, spec, None, draws=100, seed=0)["normal_auc"]
    assert np.nanmax(null) == 0.0


def test_the_precision_null_is_centred_on_the_exact_random_ranking_chance():
    _, index, spec, ranking = _setup(200, 5)
    observed = score_ranking(ranking, index, spec)
    null = retrieval_null(ranking, index, spec, None, draws=400, seed=0)
    for name, exact in (("precision_at_10", observed.precision_at_k_chance[10]), ("map_at_r", observed.map_at_r_chance),
                        ("ndcg_at_10", observed.ndcg_at_k_chance[10])):
        assert null[name].mean() == pytest.approx(exact, abs=3 * null[name].std() / np.sqrt(400) + 1e-3), name


def test_the_cluster_null_keeps_the_clusters_and_shows_how_high_nmi_is_by_chance_on_few_items():
    rng = np.random.default_rng(0)
    lab = np.eye(4, dtype=bool)[rng.integers(0, 4, 14)]
    c = cluster_scores(random_embeddings(14, 8, seed=2), lab, seed=0)
    null = cluster_null(c, None, draws=200, seed=0)
    assert null["nmi"].shape == (200,) and null["nmi"].mean() > 0.2  # 4 clusters of 14 items: far from 0
    assert np.all((null["purity"] > 0) & (null["purity"] <= 1))
