"""The multi-label batch sampler gives most anchors a positive and covers rare findings."""
from __future__ import annotations

import numpy as np
import pytest

from radsim.model.sampler import MultiLabelBatchSampler


def skewed_labels(n=3000, n_findings=60, seed=0) -> np.ndarray:
    """Mostly single-label items with Zipf-like frequencies; a few carry a second label."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_findings + 1) ** 0.8
    p /= p.sum()
    labels = np.zeros((n, n_findings), dtype=np.float32)
    labels[np.arange(n), rng.choice(n_findings, size=n, p=p)] = 1
    second = rng.random(n) < 0.1
    labels[np.flatnonzero(second), rng.choice(n_findings, size=second.sum(), p=p)] = 1
    labels[rng.random((n, n_findings)) < 0.01] = -1  # some uncertain mentions: absent for ML2
    labels[:, -1] = 0
    labels[:3, -1] = 1  # the rarest finding: 3 items
    return labels


def anchors_with_positive(batch: list[int], sets: np.ndarray) -> float:
    s = sets[batch].astype(np.float32)
    shared = (s @ s.T) > 0
    np.fill_diagonal(shared, False)
    return float(shared.any(1).mean())


def test_most_anchors_have_positives_where_random_batches_do_not():
    labels = skewed_labels()
    sets = labels == 1
    sampler = MultiLabelBatchSampler(labels, batch_size=32, findings_per_batch=8, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == sampler.reachable.size // 32 > 80
    assert all(len(b) == 32 and len(set(b)) == 32 for b in batches)
    ours = np.mean([anchors_with_positive(b, sets) for b in batches])
    rng = np.random.default_rng(1)
    rand = np.mean([anchors_with_positive(rng.choice(3000, 32, replace=False).tolist(), sets) for _ in batches])
    assert ours >= 0.9
    assert rand < 0.7, (rand, ours)  # about 0.6 here


def test_every_finding_appears_in_an_epoch_and_rare_ones_are_oversampled():
    labels = skewed_labels()
    sets = labels == 1
    sampler = MultiLabelBatchSampler(labels, batch_size=32, findings_per_batch=8, seed=2)
    seen = np.concatenate([sets[b].sum(0)[None] for b in sampler]).sum(0)
    assert (seen > 0).all()
    share_in_batches = seen / seen.sum()
    share_in_data = sets.sum(0) / sets.sum()
    rare = np.argsort(share_in_data)[:10]
    assert (share_in_batches[rare] > share_in_data[rare]).all()


def test_deterministic_per_epoch_and_split_across_ranks():
    labels = skewed_labels(n=800)
    a = list(MultiLabelBatchSampler(labels, 16, seed=3))
    b = list(MultiLabelBatchSampler(labels, 16, seed=3))
    assert a == b
    s = MultiLabelBatchSampler(labels, 16, seed=3)
    s.set_epoch(1)
    assert list(s) != a
    r0 = list(MultiLabelBatchSampler(labels, 16, seed=3, rank=0, world_size=2))
    r1 = list(MultiLabelBatchSampler(labels, 16, seed=3, rank=1, world_size=2))
    assert r0 == a[0::2] and r1 == a[1::2]


def test_impossible_settings_are_rejected():
    with pytest.raises(ValueError, match="2 or more"):
        MultiLabelBatchSampler(np.eye(4), batch_size=2)
    with pytest.raises(ValueError, match="exceeds"):
        MultiLabelBatchSampler(np.array([[1, 0]] * 3 + [[0, 1]]), batch_size=8)
