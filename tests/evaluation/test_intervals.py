"""Bootstrap intervals resampling patients (the bootstrap half of every judged interval)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from radsim.evaluation import RetrievalSpec, retrieval_scores, roc_auc
from radsim.evaluation.intervals import Interval, retrieval_intervals, weighted_auc


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
        s = retrieval_scores(emb, lab, RetrievalSpec(normal_index=0), per_query=True)
        ci = retrieval_intervals(s, [i // 2 for i in range(n)], replicates=300)  # 2 images per patient
        for name in ("precision_at_10", "map_at_r", "normal_auc", "ndcg_at_10", "finding/1"):
            assert ci[name].low <= ci[name].value <= ci[name].high, name
        assert ci["precision_at_10"].value == pytest.approx(s.precision_at_k[10])
        return ci["precision_at_10"].high - ci["precision_at_10"].low

    assert width(800) < 0.6 * width(100)


def test_patients_not_images_are_resampled():
    emb, lab = _clustered()
    s = retrieval_scores(emb, lab, RetrievalSpec(normal_index=0), per_query=True)
    many = retrieval_intervals(s, list(range(len(emb))), replicates=300)["normal_auc"]
    few = retrieval_intervals(s, [i % 3 for i in range(len(emb))], replicates=300)["normal_auc"]  # 3 "patients"
    assert (few.high - few.low) >= (many.high - many.low)


def test_intervals_need_the_per_query_values():
    emb, lab = _clustered(5)
    with pytest.raises(ValueError, match="per_query=True"):
        retrieval_intervals(retrieval_scores(emb, lab, RetrievalSpec(normal_index=None)), list(range(15)))


def test_an_interval_without_bounds_prints_its_value_alone():
    assert Interval(0.5, math.nan, math.nan).text() == "0.500" and not Interval(0.5, math.nan, 0.6).defined
    assert Interval(0.6, 0.55, 0.65).text() == "0.600 [0.550, 0.650]"
