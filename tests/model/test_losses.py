"""Label sets, miners and losses on hand-computed toys.

Toy: unit vectors at angles (degrees) 0, 55, 30, 100, 140 with label sets
  0 {nf}   1 {nf}   2 {A}   3 {A,B}   4 {B}      (columns: no_finding, A, B)
Euclidean distance between unit vectors Delta degrees apart: d = 2 sin(Delta/2).
Positives: (0,1) J=1, (2,3) J=1/2, (3,4) J=1/2 (both directions). Negatives share nothing.
Anchor -> negative angular gaps: 0:{2:30,3:100,4:140} 1:{2:25,3:45,4:85} 2:{0:30,1:25,4:110}
3:{0:100,1:45} 4:{0:140,1:85,2:110}.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from radsim.model.labelsets import label_sets, pair_masks, soft_jaccard
from radsim.model.losses import (
    ML2Loss,
    ML2PlusLoss,
    MultiSimilarityBaseline,
    TripletBaseline,
    build_loss,
)
from radsim.model.miners import MultiLabelPairMiner, MultiLabelTripletMiner

ANGLES = [0, 55, 30, 100, 140]
LABELS = torch.tensor([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 1], [0, 0, 1]], dtype=torch.float32)


def emb(angles=ANGLES, requires_grad=False):
    a = torch.tensor(np.deg2rad(angles), dtype=torch.float32)
    return torch.stack([torch.cos(a), torch.sin(a)], 1).requires_grad_(requires_grad)


def d(delta_deg: float) -> float:
    return 2 * math.sin(math.radians(delta_deg) / 2)


def triplets(t):
    return sorted(zip(*(x.tolist() for x in t)))


HARD = [(0, 1, 2), (1, 0, 2), (2, 3, 1), (3, 2, 1), (3, 4, 1), (4, 3, 1)]
SEMIHARD = [(0, 1, 3), (1, 0, 4), (2, 3, 4), (3, 2, 0), (3, 4, 1), (4, 3, 1)]


# ------------------------------------------------------------------------ label sets
def test_label_sets_map_uncertain_and_null():
    vec = torch.tensor([[0, 1, -1, float("nan")]])
    assert label_sets(vec).tolist() == [[0, 1, 0, 0]]
    assert label_sets(vec, uncertain=0.5).tolist() == [[0, 1, 0.5, 0]]
    assert label_sets(label_sets(vec, 0.5), 0.5).tolist() == [[0, 1, 0.5, 0]]  # idempotent
    with pytest.raises(ValueError, match="label values"):
        label_sets(torch.tensor([[2.0, 0.0]]))
    with pytest.raises(ValueError, match="matrix"):
        label_sets(torch.tensor([1.0, 0.0]))


def test_soft_jaccard_and_pair_masks():
    sets = torch.tensor([[0, 1, 1], [0, 0.5, 1], [0, 1, 0], [0, 0, 0]], dtype=torch.float32)
    j = soft_jaccard(sets, sets)
    assert j[0, 1].item() == pytest.approx(1.5 / 2)  # min .5+1 over max 1+1
    assert j[1, 2].item() == pytest.approx(0.5 / 2)
    assert j[0, 2].item() == pytest.approx(0.5)  # ordinary Jaccard on 0/1 sets
    pos, neg = pair_masks(sets)
    assert pos[0].tolist() == [False, True, True, False]
    assert not pos[3].any() and not neg[3].any() and not neg[:, 3].any()  # empty set: no pairs
    assert not pos.diagonal().any()


# ----------------------------------------------------------------------------- miners
def test_hard_mining_picks_the_closest_negative():
    assert triplets(MultiLabelTripletMiner("hard")(emb(), LABELS)) == HARD


def test_semihard_mining_picks_the_closest_negative_beyond_the_positive():
    assert triplets(MultiLabelTripletMiner("semihard")(emb(), LABELS)) == SEMIHARD


def test_semihard_falls_back_to_the_farthest_negative():
    # anchor 0deg, positive 90deg, negatives at 20deg and 40deg: none is beyond the positive.
    labels = torch.tensor([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=torch.float32)
    t = MultiLabelTripletMiner("semihard")(emb([0, 90, 20, 40]), labels)
    assert (0, 1, 3) in triplets(t)


def test_all_mining_and_pair_miner_enumerate_every_pair():
    t = triplets(MultiLabelTripletMiner("all")(emb(), LABELS))
    assert len(t) == 2 * 3 + 2 * 3 + 2 * 2  # (0,1),(1,0): 3 negs; (2,3),(4,3): 3; (3,2),(3,4): 2
    a1, p, a2, n = MultiLabelPairMiner()(emb(), LABELS)
    assert sorted(zip(a1.tolist(), p.tolist())) == [(0, 1), (1, 0), (2, 3), (3, 2), (3, 4), (4, 3)]
    assert len(a2) == 14  # 5*4 ordered pairs minus 6 positive


# ----------------------------------------------------------------------------- losses
def test_ml2_hard_by_hand():
    m = 0.5
    per = [d(55) - d(30) + m, d(55) - d(25) + m, d(70) - d(25) + m / 2, d(70) - d(45) + m / 2,
           d(40) - d(45) + m / 2, max(0.0, d(40) - d(85) + m / 2)]
    assert per[-1] == 0.0
    loss = ML2Loss(margin=m, mining="hard")(emb(), LABELS)
    assert loss.item() == pytest.approx(sum(per) / 5, abs=1e-5)  # mean over the non-zero ones


def test_ml2_semihard_by_hand():
    m = 0.5
    nonzero = [d(55) - d(85) + m, d(40) - d(45) + m / 2]  # (1,0,4) and (3,4,1); the others are < 0
    for zero in [d(55) - d(100) + m, d(70) - d(110) + m / 2, d(70) - d(100) + m / 2, d(40) - d(85) + m / 2]:
        assert zero < 0
    loss = ML2Loss(margin=m, mining="semihard")(emb(), LABELS)
    assert loss.item() == pytest.approx(sum(nonzero) / 2, abs=1e-5)


def test_triplet_baseline_uses_a_fixed_margin():
    m = 0.2
    per = [d(55) - d(30) + m, d(55) - d(25) + m, d(70) - d(25) + m, d(70) - d(45) + m, d(40) - d(45) + m]
    loss = TripletBaseline(margin=m, mining="hard")(emb(), LABELS)
    assert loss.item() == pytest.approx(sum(per) / 5, abs=1e-5)


def test_ml2_plus_soft_jaccard_and_trimming_by_hand():
    labels = LABELS.clone()
    labels[4] = torch.tensor([0, -1, 1])  # A uncertain -> 0.5: J(3,4) = 1.5/2 = .75
    given = tuple(torch.tensor(x) for x in zip(*[(0, 1, 2), (1, 0, 2), (2, 3, 1), (3, 2, 1), (3, 4, 1)]))
    m = 0.5
    per = [d(55) - d(30) + m, d(55) - d(25) + m, d(70) - d(25) + m / 2, d(70) - d(45) + m / 2,
           d(40) - d(45) + m * 0.75]
    loss = ML2PlusLoss(margin=m, rho=0.4)
    raw, _ = loss.triplet_losses(emb(), labels, given)
    assert raw.tolist() == pytest.approx(per, abs=1e-5)
    kept = loss.select(raw).tolist()
    # per ~ [.906, .991, .964, .632, .294]: floor(.4*5) = 2 largest, (1,0,2) and (2,3,1), dropped
    assert kept == [0, 3, 4]
    assert loss(emb(), labels, given).item() == pytest.approx((per[0] + per[3] + per[4]) / 3, abs=1e-5)
    # rho = 0 keeps all; ML2 on the same labels sees 4 -> {B} only, so J(3,4) = .5.
    assert ML2PlusLoss(margin=m, rho=0.0)(emb(), labels, given).item() == pytest.approx(sum(per) / 5, abs=1e-5)
    ml2_raw, _ = ML2Loss(margin=m).triplet_losses(emb(), labels, given)
    assert ml2_raw[4].item() == pytest.approx(d(40) - d(45) + m / 2, abs=1e-5)


def test_ml2_plus_makes_uncertain_overlap_a_positive_pair():
    labels = LABELS.clone()
    labels[4] = torch.tensor([0, -1, 1])
    ml2 = triplets(MultiLabelTripletMiner("all", uncertain=0.0)(emb(), labels))
    plus = triplets(MultiLabelTripletMiner("all", uncertain=0.5)(emb(), labels))
    assert not any(t[:2] == (2, 4) for t in ml2)
    assert any(t[:2] == (2, 4) for t in plus)


def test_multi_similarity_by_hand():
    alpha, beta, base = 2.0, 10.0, 0.5
    angles, labels = ANGLES[:4], LABELS[:4]
    s = lambda i, j: math.cos(math.radians(angles[i] - angles[j]))  # noqa: E731
    pos = {0: [1], 1: [0], 2: [3], 3: [2]}
    neg = {0: [2, 3], 1: [2, 3], 2: [0, 1], 3: [0, 1]}
    per = []
    for i in range(4):
        lp = math.log1p(sum(math.exp(-alpha * (s(i, j) - base)) for j in pos[i])) / alpha
        ln = math.log1p(sum(math.exp(beta * (s(i, j) - base)) for j in neg[i])) / beta
        per.append(lp + ln)
    loss = MultiSimilarityBaseline(alpha=alpha, beta=beta, base=base)(emb(angles), labels)
    assert loss.item() == pytest.approx(sum(per) / 4, abs=1e-5)


def test_multi_similarity_with_one_positive_and_one_negative_pair_is_not_zero():
    labels = torch.tensor([[1, 0], [1, 0], [0, 1]], dtype=torch.float32)
    a = (torch.tensor([0]), torch.tensor([1]), torch.tensor([0]), torch.tensor([2]))
    loss = MultiSimilarityBaseline(beta=10.0)(emb([0, 50, 20]), labels, a)
    assert loss.item() > 0.01


@pytest.mark.parametrize("name", ["ml2", "ml2plus", "triplet", "ms"])
def test_no_valid_triplet_gives_a_zero_loss_with_a_graph(name):
    x = emb(ANGLES, requires_grad=True)
    all_normal = torch.tensor([[1, 0, 0]] * 5, dtype=torch.float32)
    labels = all_normal if name != "ms" else torch.zeros(5, 3)  # MS still learns from positives alone
    loss = build_loss(name)(x, labels)
    assert loss.item() == 0.0 and not torch.isnan(loss)
    loss.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


@pytest.mark.parametrize("name", ["ml2", "ml2plus", "triplet", "ms"])
def test_gradients_flow_and_stay_finite_with_duplicate_embeddings(name):
    torch.manual_seed(0)
    net = torch.nn.Linear(6, 4)
    x = torch.randn(12, 6)
    x[1] = x[0]  # a zero distance inside the batch
    labels = (torch.rand(12, 5) < 0.4).float()
    labels[:, 0] = (labels[:, 1:].sum(1) == 0).float()
    labels[0], labels[1] = torch.tensor([1, 0, 0, 0, 0.0]), torch.tensor([1, 0, 0, 0, 0.0])
    z = torch.nn.functional.normalize(net(x), dim=1)
    loss = build_loss(name, **({} if name == "ms" else {"mining": "all"}))(z, labels)
    loss.backward()
    assert loss.item() > 0
    assert torch.isfinite(net.weight.grad).all() and net.weight.grad.abs().sum() > 0


def test_bad_shapes_and_names():
    with pytest.raises(ValueError, match="labels"):
        ML2Loss()(emb(), LABELS[:3])
    from radsim.data_contracts import UsageError

    with pytest.raises(UsageError, match="ml2plus"):
        build_loss("arcface")
    with pytest.raises(ValueError, match="rho"):
        ML2PlusLoss(rho=1.0)
