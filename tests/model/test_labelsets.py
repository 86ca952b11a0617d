"""One meaning of "uncertain": the sampler, the losses and miners, and the evaluation read label sets alike."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from radsim.evaluation import label_sets as evaluation_label_sets
from radsim.evaluation import relevance_matrix
from radsim.evaluation.labelsets import UNCERTAIN_HALF, UNCERTAIN_PRESENT, label_weights
from radsim.model.labelsets import ML2_UNCERTAIN, ML2PLUS_UNCERTAIN, label_sets, pair_masks
from radsim.model.sampler import MultiLabelBatchSampler

VALUES = np.array([[1, 0, -1, np.nan],
                   [np.nan, -1, -1, 1],
                   [0, 0, 0, 0],
                   [1, 1, np.nan, -1],
                   [-1, np.nan, 1, 0]], dtype=np.float32)


@pytest.mark.parametrize("uncertain", [ML2_UNCERTAIN, ML2PLUS_UNCERTAIN, UNCERTAIN_PRESENT])
def test_the_sampler_the_losses_and_the_evaluation_agree_on_membership(uncertain):
    weights = label_weights(VALUES, uncertain)
    members = weights > 0
    assert np.array_equal(label_sets(torch.from_numpy(VALUES), uncertain).numpy(), weights)  # losses and miners
    sampler = MultiLabelBatchSampler(VALUES, batch_size=2, findings_per_batch=1, uncertain=uncertain)
    for f, pool in enumerate(sampler.pools):
        assert pool.tolist() == np.flatnonzero(members[:, f]).tolist()
    positives, _ = pair_masks(label_sets(VALUES, uncertain))
    expected = relevance_matrix(members, members) & members.any(1)[:, None] & members.any(1)[None, :]
    np.fill_diagonal(expected, False)
    assert np.array_equal(positives.numpy(), expected)


def test_the_evaluation_counts_uncertain_as_absent_like_ml2_unless_asked():
    assert np.array_equal(evaluation_label_sets(VALUES), label_sets(VALUES, ML2_UNCERTAIN).numpy() > 0)
    assert np.array_equal(evaluation_label_sets(VALUES, uncertain_positive=True),
                          label_sets(VALUES, UNCERTAIN_PRESENT).numpy() > 0)
    assert label_weights(VALUES, UNCERTAIN_HALF)[1].tolist() == [0.0, 0.5, 0.5, 1.0]  # ML2+'s soft set


def test_bad_values_and_weights_are_refused_in_one_place():
    with pytest.raises(ValueError, match="uncertain must lie in"):
        label_weights(VALUES, 1.5)
    with pytest.raises(ValueError, match="label values must be"):
        label_weights(np.array([[2.0, 0.0]]))
    with pytest.raises(ValueError, match=r"\[batch, findings\] matrix"):
        label_sets(torch.zeros(3))
