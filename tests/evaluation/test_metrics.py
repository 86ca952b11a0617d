"""Hand-computed retrieval metrics and chance levels on a 5-item toy (see the comments)."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from radsim.evaluation import (
    RetrievalSpec,
    finding_precision_at_k,
    finding_precision_chance,
    jaccard_matrix,
    label_sets,
    map_at_r,
    map_at_r_chance,
    map_at_r_expected,
    ndcg_at_k,
    ndcg_at_k_chance,
    nearest_neighbours,
    normal_auc,
    precision_at_k,
    precision_at_k_chance,
    relevance_matrix,
    retrieval_scores,
    roc_auc,
)

# Items on the unit circle at these angles (degrees); columns: no_finding, A, B.
#   0: 0deg {nf}   1: 10deg {nf}   2: 25deg {A}   3: 47deg {A,B}   4: 80deg {B}
# Leave-one-out rankings by angle difference (no ties):
#   q0: 1,2,3,4   q1: 0,2,3,4   q2: 1,3,0,4   q3: 2,4,1,0   q4: 3,2,1,0
# Relevant (share >= 1 label): q0:{1} q1:{0} q2:{3} q3:{2,4} q4:{3}  -> R = 1,1,1,2,1
ANGLES = [0, 10, 25, 47, 80]
LABELS = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 1], [0, 0, 1]], dtype=bool)
D2 = 1 / math.log2(3)  # discount of rank 2


def _emb(angles=ANGLES) -> np.ndarray:
    a = np.deg2rad(np.asarray(angles, dtype=float))
    return np.stack([np.cos(a), np.sin(a)], 1).astype(np.float32)


def test_neighbour_order_matches_the_hand_ranking():
    idx, _ = nearest_neighbours(_emb(), k=4)
    assert idx.tolist() == [[1, 2, 3, 4], [0, 2, 3, 4], [1, 3, 0, 4], [2, 4, 1, 0], [3, 2, 1, 0]]


def test_precision_at_k_by_hand():
    # P@1: hits q0 q1 q3 q4 -> 4/5. P@2: 1/2,1/2,1/2,1,1/2 -> 3/5. P@4 = mean(R/4) = 6/20.
    assert precision_at_k(_emb(), LABELS, k=1) == pytest.approx(0.8)
    assert precision_at_k(_emb(), LABELS, k=2) == pytest.approx(0.6)
    assert precision_at_k(_emb(), LABELS, k=4) == pytest.approx(0.3)
    # k beyond n-1 divides by the n-1 items there are.
    assert precision_at_k(_emb(), LABELS, k=10) == pytest.approx(0.3)
    assert precision_at_k_chance(LABELS) == pytest.approx(0.3)


def test_map_at_r_by_hand():
    # AP@R: q0 1, q1 1, q2 0 (top-1 is item 1), q3 (R=2, ranks 1,2 relevant) 1, q4 1.
    assert map_at_r(_emb(), LABELS) == pytest.approx(0.8)
    # Chance, N = 4: R=1 -> 1/4; R=2 -> (H2 + 1*(2-H2)/3)/4 = (1.5 + 1/6)/4.
    expected = (4 * 0.25 + (1.5 + 1 / 6) / 4) / 5
    assert map_at_r_chance(LABELS) == pytest.approx(expected)


def _ap_at_r(rel_in_order: list[bool]) -> float:
    r = sum(rel_in_order)
    hits, total = 0, 0.0
    for i, rel in enumerate(rel_in_order[:r], start=1):
        hits += rel
        total += rel * hits / i
    return total / r


@pytest.mark.parametrize("r,n", [(1, 4), (2, 4), (3, 5), (4, 4), (2, 6)])
def test_map_at_r_chance_formula_equals_enumeration(r, n):
    aps = [_ap_at_r([i in pos for i in range(n)]) for pos in itertools.combinations(range(n), r)]
    assert map_at_r_expected(np.array([r]), n)[0] == pytest.approx(np.mean(aps))


def test_ndcg_at_k_by_hand():
    # Jaccard gains: J(0,1)=1, J(2,3)=J(3,4)=1/2, others 0.
    # q0 [1,2] 1/1; q1 [0,2] 1/1; q2 [1,3]: (0 + .5*D2)/.5; q3 [2,4]: (.5+.5*D2)/(.5+.5*D2); q4 [3,2] 1.
    assert ndcg_at_k(_emb(), LABELS, k=2) == pytest.approx((4 + D2) / 5)
    # Chance: mean gain * (1 + D2) / IDCG per query.
    per_query = [0.25 * (1 + D2), 0.25 * (1 + D2), 0.125 * (1 + D2) / 0.5, 0.25 * (1 + D2) / (0.5 + 0.5 * D2),
                 0.125 * (1 + D2) / 0.5]
    assert ndcg_at_k_chance(LABELS, k=2) == pytest.approx(np.mean(per_query))


def test_ndcg_chance_equals_enumeration_over_all_rankings():
    gains = jaccard_matrix(LABELS, LABELS)
    k, disc = 2, np.array([1.0, D2])
    values = []
    for q in range(5):
        others = [j for j in range(5) if j != q]
        ideal = (np.sort(gains[q, others])[::-1][:k] * disc).sum()
        dcgs = [(gains[q, list(p[:k])] * disc).sum() for p in itertools.permutations(others)]
        values.append(np.mean(dcgs) / ideal)
    assert ndcg_at_k_chance(LABELS, k=2) == pytest.approx(np.mean(values))


def test_per_finding_precision_by_hand():
    # k=1: nf: q0->1 yes, q1->0 yes = 1; A: q2->1 no, q3->2 yes = .5; B: q3->2 no, q4->3 yes = .5.
    got = finding_precision_at_k(_emb(), LABELS, k=1, finding_names=["no_finding", "a", "b"])
    assert got == pytest.approx({"no_finding": 1.0, "a": 0.5, "b": 0.5})
    assert finding_precision_chance(LABELS, ["no_finding", "a", "b"]) == pytest.approx(
        {"no_finding": 0.25, "a": 0.25, "b": 0.25})


def test_per_finding_precision_counts_only_the_finding_not_any_shared_label():
    # q3 {A,B}'s nearest is 2 {A}: for finding B that is a miss although 2 is "relevant" to 3.
    got = finding_precision_at_k(_emb(), LABELS, k=1, finding_names=["nf", "a", "b"])
    assert got["b"] == pytest.approx(0.5)


def test_normal_auc_by_hand():
    # k=2 votes for no_finding: q0 .5, q1 .5, q2 .5, q3 0, q4 0; normals q0 q1.
    # Each normal beats q3 and q4 and ties q2: (1+1+.5)*2 / 6.
    assert normal_auc(_emb(), LABELS, k=2) == pytest.approx(5 / 6)


def test_roc_auc_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    scores = rng.integers(0, 5, 200) / 4.0
    truth = rng.random(200) < 0.4
    assert roc_auc(scores, truth) == pytest.approx(roc_auc_score(truth, scores))
    assert math.isnan(roc_auc(scores, np.zeros(200, bool)))


def test_lone_and_unlabelled_queries_are_excluded_and_counted():
    emb = _emb(ANGLES + [200, 260])
    labels = np.zeros((7, 4), dtype=bool)
    labels[:5, :3] = LABELS
    labels[5, 3] = True  # {C}: nobody else has C -> lone query
    # item 6: empty label set -> never a scored query, never relevant
    s = retrieval_scores(emb, labels, RetrievalSpec(ks=(1, 2), ndcg_ks=(2,), finding_k=1))
    assert (s.n_queries, s.n_excluded) == (5, 2)
    assert s.precision_at_k[1] == pytest.approx(0.8)  # rankings of q0..q4 unchanged at depth 2
    assert s.precision_at_k[2] == pytest.approx(0.6)
    assert s.ndcg_at_k[2] == pytest.approx((4 + D2) / 5)
    assert "3" not in s.finding_precision  # a finding on one item has no P@k


def test_chunking_queries_and_l2_give_the_same_numbers():
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((53, 6)).astype(np.float32)
    lab = rng.random((53, 4)) < 0.35
    lab[:, 0] |= ~lab.any(1)
    whole = retrieval_scores(emb, lab)
    chunked = retrieval_scores(emb, lab, chunk_size=7)
    fast = retrieval_scores(emb, lab, RetrievalSpec(with_map=False))
    for name, value in vars(whole).items():
        assert getattr(chunked, name) == pytest.approx(value), name
    assert fast.precision_at_k == pytest.approx(whole.precision_at_k)
    normed = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    l2 = retrieval_scores(normed, lab, metric="l2")
    assert l2.precision_at_k == pytest.approx(whole.precision_at_k)
    assert l2.map_at_r == pytest.approx(whole.map_at_r)
    sub = retrieval_scores(emb, lab, RetrievalSpec(ks=(10,)), queries=np.arange(0, 53, 2), chunk_size=5)
    idx, _ = nearest_neighbours(emb, 10)
    rel = relevance_matrix(lab, lab)
    per_q = [rel[q, idx[q]].mean() for q in range(0, 53, 2) if rel[q].sum() - rel[q, q] > 0]
    assert sub.precision_at_k[10] == pytest.approx(np.mean(per_q))


def test_label_sets_from_chexpert_values():
    values = np.array([[1, 0, -1, np.nan], [0, 1, None, -1]], dtype=object)
    assert label_sets(values).tolist() == [[True, False, False, False], [False, True, False, False]]
    assert label_sets(values, uncertain_positive=True).tolist() == [[True, False, True, False],
                                                                     [False, True, False, True]]


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="rows"):
        precision_at_k(_emb(), LABELS[:4])
    with pytest.raises(ValueError, match="non-finite"):
        precision_at_k(np.full((5, 2), np.nan), LABELS)
    with pytest.raises(ValueError, match="at least 2"):
        precision_at_k(_emb()[:1], LABELS[:1])


def test_agrees_with_pytorch_metric_learning_on_single_label_data():
    pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    rng = np.random.default_rng(7)
    classes = np.repeat(np.arange(4), 15)
    emb = rng.standard_normal((60, 8)).astype(np.float32) + np.eye(8, dtype=np.float32)[classes] * 2.5
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    one_hot = np.eye(4, dtype=bool)[classes]
    calc = AccuracyCalculator(include=("precision_at_1", "mean_average_precision_at_r"),
                              k="max_bin_count", device=__import__("torch").device("cpu"))
    pml = calc.get_accuracy(emb, classes)
    ours = retrieval_scores(emb, one_hot, RetrievalSpec(ks=(1,), ndcg_ks=(), finding_k=None, normal_index=None))
    assert ours.precision_at_k[1] == pytest.approx(pml["precision_at_1"], abs=1e-6)
    assert ours.map_at_r == pytest.approx(pml["mean_average_precision_at_r"], abs=1e-6)
    assert 0.2 < ours.map_at_r < 0.95  # a non-trivial case
