"""Label sets for metric learning, from CheXpert-style label vectors (DESIGN §6, §8).

A label vector holds 1 (present), 0 (absent), -1 (uncertain) or NaN (not mentioned) per
finding, `no_finding` included, so two normal exams share a label. A label set is a
float vector in [0, 1], from radsim's one conversion (radsim.evaluation.labelsets.label_weights):
1 -> 1, 0 and NaN -> 0, -1 -> `uncertain` (0 for ML2, i.e. absent; 0.5 for ML2+). Values
already in [0, 1] pass through, so converting twice is harmless. Jaccard is the soft Jaccard
sum(min)/sum(max), which is the ordinary Jaccard index on 0/1 sets. A row whose set is empty
(for example only uncertain findings under ML2, or an unlabelled image) takes no part in any pair.
"""
from __future__ import annotations

import numpy as np
import torch

from radsim.evaluation.labelsets import UNCERTAIN_ABSENT, UNCERTAIN_HALF, label_weights

ML2_UNCERTAIN = UNCERTAIN_ABSENT
ML2PLUS_UNCERTAIN = UNCERTAIN_HALF


def label_sets(labels: torch.Tensor | np.ndarray, uncertain: float = ML2_UNCERTAIN) -> torch.Tensor:
    """[B, F] float32 label sets from label vectors: radsim.evaluation.labelsets.label_weights, as a tensor.

    The batch's labels come from the data loader on the CPU; the caller moves the sets to its device.
    """
    values = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else labels
    try:
        return torch.from_numpy(label_weights(values, uncertain))
    except ValueError as exc:
        raise ValueError(str(exc).replace("labels must be a 2-D matrix (items x findings)",
                                          "label vectors must be a [batch, findings] matrix")) from None


def soft_intersection(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[A, B] sum over findings of min(a, b): |A & B| for 0/1 sets."""
    return torch.minimum(a[:, None, :], b[None, :, :]).sum(-1)


def soft_jaccard(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[A, B] sum(min)/sum(max); 0 where both sets are empty."""
    inter = soft_intersection(a, b)
    union = torch.maximum(a[:, None, :], b[None, :, :]).sum(-1)
    return torch.where(union > 0, inter / union.clamp_min(1e-12), torch.zeros_like(union))


def pair_masks(sets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(positive, negative) [B, B] bool masks: share >= 1 label / share none, both non-empty, i != j."""
    inter = soft_intersection(sets, sets)
    nonempty = sets.sum(1) > 0
    both = nonempty[:, None] & nonempty[None, :]
    both &= ~torch.eye(sets.shape[0], dtype=torch.bool, device=sets.device)
    return (inter > 0) & both, (inter == 0) & both
