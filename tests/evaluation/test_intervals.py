"""95% intervals resampling patients, and the flag on metrics that are noise (issue 14)."""
from __future__ import annotations

import numpy as np
import pytest

from radsim.evaluation import evaluate_embeddings, random_embeddings, retrieval_scores
from radsim.evaluation.intervals import Interval, retrieval_intervals, weighted_auc
from radsim.evaluation import roc_auc
from radsim.evaluation.report import HEADLINE, NOT_DISTINGUISHABLE, EvaluationResult


def _clustered(n_per: int = 30, seed: int = 0):
    rng = np.random.default_rng(seed)
    sets = [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    centres = np.eye(8)[:3] * 5
    emb = np.concatenate([c + rng.standard_normal((n_per, 8)) * 0.3 for c in centres]).astype(np.float32)
    return emb, np.repeat(np.array(sets, dtype=bool), n_per, axis=0)


def test_weighted_auc_is_the_auc_of_the_repeated_items():
    rng = np.random.default_rng(3)
    scores, truth, weights = rng.random(300).round(1), rng.random(300) < 0.4, rng.integers(0, 4, 300)
    rows = np.repeat(np.arange(300), weights)
    assert weighted_auc(scores, truth, weights) == pytest.approx(roc_auc(scores[rows], truth[rows]))


def test_intervals_contain_the_value_and_narrow_with_more_patients():
    def width(n: int) -> float:
        rng = np.random.default_rng(0)
        emb, lab = rng.standard_normal((n, 8)), rng.random((n, 3)) < 0.4
        s = retrieval_scores(emb, lab, per_query=True, normal_index=0)
        ci = retrieval_intervals(s, [i // 2 for i in range(n)], replicates=300)  # 2 images per patient
        for name in ("precision_at_10", "map_at_r", "normal_auc", "ndcg_at_10"):
            assert ci[name].low <= ci[name].value <= ci[name].high, name
        return ci["precision_at_10"].high - ci["precision_at_10"].low

    assert width(800) < 0.6 * width(100)


def test_patients_not_images_are_resampled():
    emb, lab = _clustered()
    s = retrieval_scores(emb, lab, per_query=True, normal_index=0)
    many = retrieval_intervals(s, list(range(len(emb))), replicates=300)["normal_auc"]
    few = retrieval_intervals(s, [i % 3 for i in range(len(emb))], replicates=300)["normal_auc"]  # 3 "patients"
    assert (few.high - few.low) >= (many.high - many.low)


def test_a_metric_whose_interval_reaches_chance_is_flagged():
    emb, lab = _clustered()
    good = {(r.metric, r.k): r for r in evaluate_embeddings(emb, lab, model_version="v", split="test",
                                                            groups=list(range(len(emb))), replicates=300)}
    assert good[("precision_at_k", 10)].distinguishable is True and good[("nmi", None)].distinguishable is True
    noise = evaluate_embeddings(random_embeddings(90, 8, seed=5), lab, model_version="v", split="test",
                                groups=[i // 3 for i in range(90)], replicates=300)
    by = {(r.metric, r.k): r for r in noise}
    p10 = by[("precision_at_k", 10)]
    assert p10.ci_low <= max(p10.chance_value, p10.random_value) and p10.distinguishable is False
    assert p10.to_dict()["distinguishable_from_chance"] is False
    lines = EvaluationResult("v", None, noise).headline()  # type: ignore[arg-type]
    flagged = [line for line in lines if line.startswith("P@10")]
    assert flagged and flagged[0].endswith(NOT_DISTINGUISHABLE)
    assert len(lines) == len(HEADLINE)


def test_interval_without_bounds_is_not_a_claim():
    assert not Interval(0.5, float("nan"), float("nan")).above(0.1)
    assert Interval(0.6, 0.55, 0.65).above(0.5, None) and not Interval(0.6, 0.45, 0.65).above(0.5)
