"""Verdicts at any size: true nulls, intervals that are intervals, and too few to judge where they cannot be."""
from __future__ import annotations

import math

import numpy as np
import pytest

from radsim.evaluation import evaluate_embeddings, random_embeddings
from radsim.evaluation.evaluate import EvaluationOptions
from radsim.evaluation.intervals import Interval
from radsim.evaluation.judge import ABOVE, BELOW, NOT_DISTINGUISHABLE, TOO_FEW, MinimumSizes, judge

FAST = EvaluationOptions(null_draws=200, replicates=200)


def _null_case(n: int, seed: int, findings: int = 6):
    """Random embeddings with patient likeness, labels unrelated to them: every claim is false."""
    rng = np.random.default_rng(seed)
    lab = rng.random((n, findings)) < rng.uniform(0.1, 0.4, findings)
    lab[:, 0] = ~lab[:, 1:].any(1)
    groups = np.repeat(np.arange(n), rng.integers(1, 4, n))[:n]
    emb = random_embeddings(n, 12, seed=seed) + 0.7 * rng.standard_normal((n, 12))[groups]
    return emb, lab, groups.tolist()


def test_a_permutation_run_over_random_embeddings_claims_a_difference_in_at_most_7_percent():
    judged, claims = 0, 0
    for n in (14, 30, 60, 120):
        for seed in range(8):
            emb, lab, groups = _null_case(n, 100 * n + seed)
            for r in evaluate_embeddings(emb, lab, model_version="v", split="test", groups=groups,
                                         options=FAST.__class__(**{**FAST.__dict__, "seed": seed})):
                judged += r.judged
                claims += r.verdict in (ABOVE, BELOW)
    print(f"{claims} false claims in {judged} judged records")
    assert judged >= 300
    assert claims / judged <= 0.07, f"{claims} false claims in {judged} judged records"


def test_no_interval_is_zero_width_or_outside_its_range_and_each_holds_its_value():
    for n, seed in ((14, 1), (40, 2), (150, 3)):
        emb, lab, groups = _null_case(n, seed)
        for r in evaluate_embeddings(emb, lab, model_version="v", split="test", groups=groups, options=FAST):
            if r.judged:
                assert 0.0 <= r.ci_low < r.ci_high <= 1.0, r
                assert r.ci_low <= r.value <= r.ci_high, r
            else:
                assert r.ci_low is None and r.ci_high is None and r.note, r


def test_n_at_most_k_plus_one_is_too_few_to_judge_never_below_chance():
    emb, lab, groups = _null_case(11, 4)
    by = {(r.metric, r.k): r for r in evaluate_embeddings(emb, lab, model_version="v", split="test",
                                                          options=FAST)}
    for key in (("precision_at_k", 10), ("ndcg_at_k", 10), ("normal_auc", 10)):
        assert by[key].verdict == TOO_FEW and "k = 10 needs more than 11 exams" in by[key].note, key
    assert all(r.verdict != BELOW for r in by.values())
    p10 = by[("precision_at_k", 10)]
    assert math.isfinite(p10.value) and p10.n_queries >= 10 and p10.ci_low is None  # value and n kept, no interval


def test_too_few_patients_or_one_class_is_too_few_to_judge():
    emb, lab, _ = _null_case(40, 5)
    recs = evaluate_embeddings(emb, lab, model_version="v", split="test", groups=[i % 3 for i in range(40)],
                               options=FAST)
    assert all(r.verdict == TOO_FEW and "3 patients, fewer than 5" in r.note for r in recs
               if r.metric in ("precision_at_k", "map_at_r"))
    lab[:, 0] = False  # no normal exam: the AUC has one class
    auc = next(r for r in evaluate_embeddings(emb, lab, model_version="v", split="test", options=FAST)
               if r.metric == "normal_auc")
    assert auc.verdict == TOO_FEW and "0 normal" in auc.note


def test_an_interval_wholly_below_chance_is_below_chance_and_wholly_above_is_above():
    null = np.random.default_rng(0).normal(0.5, 0.02, 500)
    assert judge(0.19, 0.5, null, Interval(0.19, 0.07, 0.33)).verdict == BELOW
    assert judge(0.80, 0.5, null, Interval(0.80, 0.70, 0.88)).verdict == ABOVE
    assert judge(0.52, 0.5, null, Interval(0.52, 0.45, 0.60)).verdict == NOT_DISTINGUISHABLE


def test_the_inverted_permutation_test_is_the_interval_and_bounds_stay_in_range():
    null = np.random.default_rng(1).normal(0.3, 0.1, 500)
    j = judge(0.45, 0.3, null, Interval(0.45, 0.44, 0.46))  # a bootstrap over a handful of patients
    assert j.verdict == NOT_DISTINGUISHABLE and j.ci_low < 0.3 < j.ci_high  # 0.45 is inside the null's spread
    low_q, high_q = np.percentile(null, 2.5, method="lower"), np.percentile(null, 97.5, method="higher")
    assert (j.ci_low, j.ci_high) == pytest.approx((0.45 - (high_q - 0.3), 0.45 + (0.3 - low_q)))
    assert judge(0.45, 0.3, None, Interval(0.45, 0.40, 0.50)).verdict == ABOVE  # no null: the bootstrap's interval
    near_one = judge(0.99, 0.5, np.random.default_rng(2).normal(0.5, 0.05, 500), None)
    assert near_one.ci_high == 1.0 and near_one.verdict == ABOVE
    flat = judge(0.4, 0.4, np.full(500, 0.4), Interval(0.4, 0.4, 0.4))
    assert flat.verdict == TOO_FEW and flat.ci_low is None
    assert judge(math.nan, 0.5, null, None).verdict == TOO_FEW


def test_a_real_effect_is_called_above_chance_with_a_random_baseline_of_several_draws():
    rng = np.random.default_rng(0)
    sets = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 1]], dtype=bool)
    cls = rng.integers(0, 3, 90)
    emb = (np.eye(8)[cls] * 4 + rng.standard_normal((90, 8))).astype(np.float32)
    recs = evaluate_embeddings(emb, sets[cls], model_version="v", split="test", groups=(np.arange(90) // 2).tolist(),
                               options=FAST)
    by = {(r.metric, r.k): r for r in recs}
    for key in (("precision_at_k", 10), ("map_at_r", None), ("normal_auc", 10), ("nmi", None)):
        assert by[key].verdict == ABOVE, by[key]
    p10 = by[("precision_at_k", 10)]
    assert p10.random_sd is not None and p10.random_sd > 0 and p10.n_patients == 45 and p10.n_queries == 90


def test_minimum_sizes_are_a_parameter():
    emb, lab, groups = _null_case(60, 9)
    strict = EvaluationOptions(null_draws=200, replicates=200, minimum=MinimumSizes(patients=1000))
    assert all(r.verdict == TOO_FEW for r in evaluate_embeddings(emb, lab, model_version="v", split="t",
                                                                   groups=groups, options=strict))


@pytest.mark.parametrize("n", [3, 5])
def test_tiny_sets_never_crash_and_are_too_few(n):
    emb, lab, groups = _null_case(n, n)
    assert all(r.verdict == TOO_FEW for r in evaluate_embeddings(emb, lab, model_version="v", split="t",
                                                                   groups=groups, options=FAST))
