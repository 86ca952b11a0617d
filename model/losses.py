"""Multi-label metric-learning losses with one interface: `loss(embeddings, labels, indices_tuple=None)`.

`labels` are label vectors [B, F] (1/0/-1/NaN, `no_finding` included) or label sets; each
loss turns them into label sets with its own `uncertain` value. Without `indices_tuple`
the loss asks its miner. Distances and reducers are pytorch-metric-learning's: by
default Euclidean distance on the unit-norm embeddings (`LpDistance`) and the mean over
triplets with a positive loss (`AvgNonZeroReducer`, PML's triplet default). A batch
without a valid triplet gives a zero loss that still carries a graph (never NaN).

- `ML2Loss`: the paper's loss as a public re-implementation describes §3.2:
  max(0, d(a,p) - d(a,n) + m * J(a,p)), J the Jaccard index of the label sets.
- `ML2PlusLoss`: radsim's OWN noise-robust variant (not from the paper, whose second
  loss we could not read): soft labels (uncertain = 0.5), soft Jaccard sum(min)/sum(max)
  in the margin, and in each batch the floor(rho * T) triplets with the largest loss
  are dropped as presumed label noise before reduction.
- `TripletBaseline`: the same triplets with a fixed margin (no Jaccard).
- `MultiSimilarityBaseline`: PML's MultiSimilarityLoss fed with radsim's pair miner.
"""
from __future__ import annotations

import math

import torch
from pytorch_metric_learning.distances import BaseDistance, LpDistance
from pytorch_metric_learning.losses import MultiSimilarityLoss
from pytorch_metric_learning.reducers import AvgNonZeroReducer, BaseReducer
from torch import nn

from .labelsets import ML2_UNCERTAIN, ML2PLUS_UNCERTAIN, label_sets
from .miners import MultiLabelPairMiner, MultiLabelTripletMiner, Strategy

LOSSES = ("ml2", "ml2plus", "triplet", "ms")


def _check(embeddings: torch.Tensor, labels: torch.Tensor) -> None:
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must be [batch, dim], got shape {tuple(embeddings.shape)}")
    if labels.ndim != 2 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(
            f"labels must be [batch, findings] with batch {embeddings.shape[0]}, got {tuple(labels.shape)}"
        )


class _MarginTripletLoss(nn.Module):
    """Shared body: mine (unless given), hinge on distances, optionally trim, reduce."""

    uncertain = ML2_UNCERTAIN

    def __init__(self, margin: float, mining: Strategy = "semihard", distance: BaseDistance | None = None,
                 reducer: BaseReducer | None = None, miner: nn.Module | None = None):
        super().__init__()
        self.margin = float(margin)
        self.distance = distance if distance is not None else LpDistance()
        self.reducer = reducer if reducer is not None else AvgNonZeroReducer()
        self.miner = miner if miner is not None else MultiLabelTripletMiner(mining, self.distance, self.uncertain)

    def margins(self, sets: torch.Tensor, a: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return torch.full(a.shape, self.margin, device=sets.device)

    def select(self, losses: torch.Tensor) -> torch.Tensor:
        """Indices of the triplets that are reduced (all of them, except in ML2+)."""
        return torch.arange(losses.numel(), device=losses.device)

    def triplet_losses(self, embeddings: torch.Tensor, labels: torch.Tensor,
                       indices_tuple: tuple[torch.Tensor, ...] | None = None):
        """(per-triplet losses, (a, p, n)) before trimming and reduction; useful for tests and logging."""
        labels = torch.as_tensor(labels, device=embeddings.device)
        _check(embeddings, labels)
        sets = label_sets(labels, self.uncertain).to(embeddings.device)
        if indices_tuple is None:
            indices_tuple = self.miner(embeddings, sets)
        a, p, n = (t.to(embeddings.device) for t in indices_tuple[:3])
        if a.numel() == 0:
            return embeddings.new_zeros(0), (a, p, n)
        mat = self.distance(embeddings.float())
        violation = self.distance.margin(mat[a, p], mat[a, n]) + self.margins(sets, a, p)
        return torch.relu(violation), (a, p, n)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor,
                indices_tuple: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
        losses, (a, p, n) = self.triplet_losses(embeddings, labels, indices_tuple)
        if losses.numel() == 0:
            return torch.sum(embeddings * 0)
        keep = self.select(losses.detach())
        loss_dict = {
            "loss": {"losses": losses[keep], "indices": (a[keep], p[keep], n[keep]), "reduction_type": "triplet"}
        }
        return self.reducer(loss_dict, embeddings, None)


class ML2Loss(_MarginTripletLoss):
    """max(0, d(a,p) - d(a,n) + m * J(a,p)); uncertain counts as absent (configurable)."""

    def __init__(self, margin: float = 0.5, mining: Strategy = "semihard", uncertain: float = ML2_UNCERTAIN,
                 distance: BaseDistance | None = None, reducer: BaseReducer | None = None,
                 miner: nn.Module | None = None):
        self.uncertain = uncertain
        super().__init__(margin, mining, distance, reducer, miner)

    def margins(self, sets: torch.Tensor, a: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return self.margin * _rowwise_jaccard(sets[a], sets[p])


def _rowwise_jaccard(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Soft Jaccard of matching rows: sum(min)/sum(max), 0 for two empty sets."""
    inter = torch.minimum(x, y).sum(1)
    union = torch.maximum(x, y).sum(1)
    return torch.where(union > 0, inter / union.clamp_min(1e-12), torch.zeros_like(union))


class ML2PlusLoss(ML2Loss):
    """radsim's design (not the paper's): ML2 with soft labels/Jaccard and per-batch trimming.

    `rho` is the fraction of mined triplets, by descending loss, dropped as presumed label
    noise: floor(rho * T) of the T triplets.
    """

    def __init__(self, margin: float = 0.5, rho: float = 0.1, mining: Strategy = "semihard",
                 uncertain: float = ML2PLUS_UNCERTAIN, distance: BaseDistance | None = None,
                 reducer: BaseReducer | None = None, miner: nn.Module | None = None):
        if not 0.0 <= rho < 1.0:
            raise ValueError(f"rho must lie in [0, 1), got {rho}")
        self.rho = float(rho)
        super().__init__(margin, mining, uncertain, distance, reducer, miner)

    def select(self, losses: torch.Tensor) -> torch.Tensor:
        n_drop = math.floor(self.rho * losses.numel())
        order = torch.argsort(losses, descending=True, stable=True)
        return torch.sort(order[n_drop:]).values


class TripletBaseline(_MarginTripletLoss):
    """Triplet loss with "shares >= 1 label" positives and a fixed margin."""

    def __init__(self, margin: float = 0.2, mining: Strategy = "semihard", uncertain: float = ML2_UNCERTAIN,
                 distance: BaseDistance | None = None, reducer: BaseReducer | None = None,
                 miner: nn.Module | None = None):
        self.uncertain = uncertain
        super().__init__(margin, mining, distance, reducer, miner)


class MultiSimilarityBaseline(nn.Module):
    """PML's MultiSimilarityLoss on radsim's multi-label pairs.

    PML rejects 2-D labels, so the pairs come from `MultiLabelPairMiner` as a 4-tuple.
    PML's `GenericPairLoss.compute_loss` returns zero whenever every index tensor has at
    most one entry (a batch with one positive and one negative pair), so this calls the
    loss's matrix path and reducer directly.
    """

    def __init__(self, alpha: float = 2.0, beta: float = 50.0, base: float = 0.5,
                 uncertain: float = ML2_UNCERTAIN, miner: nn.Module | None = None):
        super().__init__()
        self.uncertain = uncertain
        self.loss = MultiSimilarityLoss(alpha=alpha, beta=beta, base=base)
        self.miner = miner if miner is not None else MultiLabelPairMiner(uncertain)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor,
                indices_tuple: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
        labels = torch.as_tensor(labels, device=embeddings.device)
        _check(embeddings, labels)
        if indices_tuple is None:
            indices_tuple = self.miner(embeddings, label_sets(labels, self.uncertain))
        if len(indices_tuple) == 3:
            a, p, n = indices_tuple
            indices_tuple = (a, p, a, n)
        if all(t.numel() == 0 for t in indices_tuple):
            return torch.sum(embeddings * 0)
        emb = embeddings.float()
        mat = self.loss.distance(emb)
        loss_dict = self.loss.mat_based_loss(mat, tuple(t.to(emb.device) for t in indices_tuple))
        return self.loss.reducer(loss_dict, emb, None)


def build_loss(name: str, **kwargs) -> nn.Module:
    """`--loss ml2|ml2plus|triplet|ms` -> a loss module (kwargs go to its constructor)."""
    classes = {"ml2": ML2Loss, "ml2plus": ML2PlusLoss, "triplet": TripletBaseline, "ms": MultiSimilarityBaseline}
    try:
        return classes[name.lower()](**kwargs)
    except KeyError:
        from radsim.data_contracts import UsageError

        raise UsageError(f"unknown loss {name!r}: choose one of {', '.join(LOSSES)}") from None
