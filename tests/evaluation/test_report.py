"""Clustering metrics, evaluation records and the one-call evaluation."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from radsim.data_contracts import ContractViolation
from radsim.evaluation import (
    MetricRecord,
    cluster_scores,
    evaluate_embeddings,
    powerset_classes,
    purity,
    random_embeddings,
    records_to_table,
)


def test_purity_by_hand():
    # cluster 0 = {a, a}: 2; cluster 1 = {a, b, b}: 2 -> 4/5.
    assert purity([0, 0, 1, 1, 1], ["a", "a", "a", "b", "b"]) == pytest.approx(0.8)


def test_powerset_classes_keep_the_most_frequent_exact_sets():
    labels = np.array([[1, 0, 0]] * 3 + [[0, 1, 1]] * 2 + [[0, 1, 0]] + [[0, 0, 0]] * 4, dtype=bool)
    mask, classes, keys = powerset_classes(labels, top=2)
    assert keys == [(0,), (1, 2)]  # the empty set is never a class
    assert mask.tolist() == [True] * 5 + [False] * 5
    assert classes.tolist() == [0, 0, 0, 1, 1]


def _clustered(n_per=20, seed=0):
    rng = np.random.default_rng(seed)
    sets = [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    centres = np.eye(8)[:3] * 5
    emb = np.concatenate([c + rng.standard_normal((n_per, 8)) * 0.3 for c in centres]).astype(np.float32)
    labels = np.repeat(np.array(sets, dtype=bool), n_per, axis=0)
    return emb, labels


def test_cluster_scores_perfect_and_random():
    emb, labels = _clustered()
    good = cluster_scores(emb, labels, seed=0)
    assert good.n_clusters == 3 and good.n_items == 60
    assert good.nmi == pytest.approx(1.0) and good.purity == pytest.approx(1.0)
    rand = cluster_scores(random_embeddings(60, 8, seed=1), labels, seed=0)
    assert rand.nmi < 0.3


def test_contingency_nmi_and_purity_equal_scikit_learn():
    from sklearn.metrics import normalized_mutual_info_score

    from radsim.evaluation.clustering import contingency_scores

    rng = np.random.default_rng(4)
    for n, k, c in ((50, 3, 4), (200, 8, 5), (7, 2, 2)):
        pred, truth = rng.integers(0, k, n), rng.integers(0, c, n)
        nmi, pur = contingency_scores(pred, truth)
        assert nmi == pytest.approx(normalized_mutual_info_score(truth, pred)) and pur == pytest.approx(
            purity(pred, truth)
        )
    assert contingency_scores(np.zeros(5), np.zeros(5))[0] == 1.0  # one cluster, one class: identical


def test_record_dict_is_json_safe_and_table_follows_the_contract():
    recs = [MetricRecord("v1", "test", "precision_at_k", 10, 0.8, 0.4, 0.41, 0.7, 0.9, verdict="above chance",
                         n_queries=40, n_patients=20, random_sd=0.02),
            MetricRecord("v1", "test", "map_at_r", None, float("nan"), None, None, note="not computable")]
    assert json.loads(json.dumps([r.to_dict() for r in recs]))[1]["value"] is None
    table = records_to_table(recs)
    assert table.column_names == ["model_version", "split", "metric", "k", "clusters", "value", "chance_value",
                                  "random_value", "random_sd", "ci_low", "ci_high", "verdict", "n_queries",
                                  "n_patients", "note", "decision", "collapsed"]
    assert table.column("k").to_pylist() == [10, None]
    assert table.column("verdict").to_pylist() == ["above chance", "too few to judge"]
    with pytest.raises(ContractViolation):
        records_to_table(recs + [recs[0]])  # duplicate key
    with pytest.raises(ContractViolation, match="verdict"):
        records_to_table([MetricRecord("v1", "test", "nmi", None, 0.5, verdict="significant")])


def test_evaluate_embeddings_reports_every_metric_above_its_baselines():
    emb, labels = _clustered(n_per=20)
    recs = evaluate_embeddings(emb, labels, model_version="v1", split="test",
                               finding_names=["no_finding", "a", "b"])
    by = {(r.metric, r.k): r for r in recs}
    assert set(by) == {("precision_at_k", 1), ("precision_at_k", 5), ("precision_at_k", 10), ("map_at_r", None),
                       ("ndcg_at_k", 10), ("precision_at_k/no_finding", 10), ("precision_at_k/a", 10),
                       ("precision_at_k/b", 10), ("normal_auc", 10), ("nmi", None), ("purity", None)}
    assert by[("nmi", None)].clusters == by[("purity", None)].clusters == 3  # clusters, not neighbours
    for r in recs:
        assert r.random_value is not None and r.chance_value is not None and r.random_sd is not None
        assert r.value > r.random_value and r.value > r.chance_value, r
        assert r.verdict == "above chance" and r.n_queries and r.n_patients, r
    assert by[("precision_at_k", 10)].value == pytest.approx(1.0)
    # P@k chance: no_finding items (20) see 19 relevant of 59; the two 'a' classes (40) see 39. The null's
    # mean, over permutations of single-image patients, is that random-ranking expectation.
    exact = (20 * 19 / 59 + 40 * 39 / 59) / 60
    assert by[("precision_at_k", 10)].chance_value == pytest.approx(exact, abs=0.01)
    assert by[("normal_auc", 10)].chance_value < 0.5  # leaving the query out biases the vote: not 0.5
    assert math.isclose(records_to_table(recs).num_rows, len(recs))


def test_evaluation_never_imports_torch():
    code = (
        "import sys, numpy as np\n"
        "from radsim.evaluation import evaluate_embeddings, random_embeddings\n"
        "lab = np.random.default_rng(0).random((40, 3)) < 0.5\n"
        "evaluate_embeddings(random_embeddings(40, 4), lab, model_version='v', split='s')\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
