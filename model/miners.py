"""In-batch miners for multi-label data, in pytorch-metric-learning's style.

PML's miners compare 1-D class labels; ours take label sets ([B, F], see labelsets) and
return PML-shaped `indices_tuple`s, so PML losses can consume them too:
- `MultiLabelTripletMiner` -> (anchors, positives, negatives)
- `MultiLabelPairMiner`    -> (anchors1, positives, anchors2, negatives)
A positive shares >= 1 label with the anchor; a negative shares none.
"""
from __future__ import annotations

from typing import Literal

import torch
from pytorch_metric_learning.distances import BaseDistance, LpDistance
from torch import nn

from .labelsets import ML2_UNCERTAIN, label_sets, pair_masks

Strategy = Literal["all", "hard", "semihard"]
_EMPTY = torch.empty(0, dtype=torch.long)


def _as_distance(mat: torch.Tensor, distance: BaseDistance) -> torch.Tensor:
    """Smaller = closer, whatever the distance (PML similarities are 'inverted')."""
    return -mat if distance.is_inverted else mat


def _pairs(labels: torch.Tensor, uncertain: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive and negative pair masks of a batch's label sets (radsim.model.labelsets)."""
    return pair_masks(label_sets(labels, uncertain).to(device))

class MultiLabelTripletMiner(nn.Module):
    """Triplets per (anchor, positive) pair, with the negative chosen by `strategy`:

    - "all": every negative of the anchor.
    - "hard": the closest negative of the anchor.
    - "semihard": the closest negative farther than the positive (FaceNet); when every
      negative is closer than the positive, the farthest negative (as TensorFlow's
      `triplet_semihard_loss` does), so the pair still gets a gradient-bearing triplet.
    Anchors without negatives give no triplets. Mining runs without gradients.
    """

    def __init__(self, strategy: Strategy = "semihard", distance: BaseDistance | None = None,
                 uncertain: float = ML2_UNCERTAIN):
        super().__init__()
        if strategy not in ("all", "hard", "semihard"):
            raise ValueError(f"unknown mining strategy {strategy!r}: use all, hard or semihard")
        self.strategy = strategy
        self.distance = distance if distance is not None else LpDistance()
        self.uncertain = uncertain

    @torch.no_grad()
    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        pos, neg = _pairs(labels, self.uncertain, embeddings.device)
        a, p = torch.nonzero(pos, as_tuple=True)
        if a.numel() == 0 or not bool(neg.any()):
            e = _EMPTY.to(embeddings.device)
            return e, e, e
        if self.strategy == "all":
            trip = torch.nonzero(pos[:, :, None] & neg[:, None, :], as_tuple=True)
            return trip[0], trip[1], trip[2]
        dist = _as_distance(self.distance(embeddings.detach().float()), self.distance)
        inf = torch.tensor(float("inf"), device=dist.device, dtype=dist.dtype)
        neg_a = neg[a]  # [T, B]
        d_an = torch.where(neg_a, dist[a], inf)
        if self.strategy == "hard":
            n = d_an.argmin(1)
        else:
            d_ap = dist[a, p][:, None]
            outside = torch.where(neg_a & (dist[a] > d_ap), dist[a], inf)
            farthest = torch.where(neg_a, dist[a], -inf).argmax(1)
            has_outside = torch.isfinite(outside).any(1)
            n = torch.where(has_outside, outside.argmin(1), farthest)
        keep = neg_a.any(1)
        return a[keep], p[keep], n[keep]


class MultiLabelPairMiner(nn.Module):
    """Every positive and every negative pair, as PML's 4-tuple (for pair losses such as MS)."""

    def __init__(self, uncertain: float = ML2_UNCERTAIN):
        super().__init__()
        self.uncertain = uncertain

    @torch.no_grad()
    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        pos, neg = _pairs(labels, self.uncertain, embeddings.device)
        a1, p = torch.nonzero(pos, as_tuple=True)
        a2, n = torch.nonzero(neg, as_tuple=True)
        return a1, p, a2, n
