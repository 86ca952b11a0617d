"""Validation during training: P@10 and normal-vs-abnormal AUC with chance levels, intervals and collapse.

What the promotion gates read (radsim.warehouse.gates). numpy and radsim.evaluation, plus
torch only to embed the validation split.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .data import SplitData
from .embed import embed_images
from .train_core import DeviceSetup


# ----------------------------------------------------------------------------- validation
def validation_metrics(embeddings: np.ndarray, labels: np.ndarray, normal_index: int | None,
                       groups: Sequence[str] | None = None) -> dict[str, Any]:
    """P@10 and normal-vs-abnormal kNN AUC with their chance levels (radsim.evaluation).

    With `groups` (each item's patient), also 95% intervals resampling patients, the number of
    patients, and the mean pairwise cosine of the embeddings (near 1: the embedding collapsed).
    These are what the promotion gates read (radsim.warehouse.promotion).
    """
    from radsim.evaluation import retrieval_scores

    if embeddings.shape[0] < 2:
        return {}
    s = retrieval_scores(embeddings, labels, ks=(10,), ndcg_ks=(), finding_k=None, normal_index=normal_index,
                         with_map=False, per_query=groups is not None)
    auc = s.normal_auc if normal_index is not None else None
    out = {
        "precision_at_10": _num(s.precision_at_k[10]),
        "precision_at_10_chance": _num(s.precision_at_k_chance[10]),
        "normal_auc": _num(auc),
        "normal_auc_chance": 0.5,
        "n_items": int(s.n_items),
        "n_queries": int(s.n_queries),
    }
    if groups is not None:
        from radsim.evaluation.intervals import retrieval_intervals

        ci = retrieval_intervals(s, groups, replicates=500, seed=0)
        for name in ("precision_at_10", "normal_auc"):
            if name in ci and ci[name].defined:
                out[f"{name}_ci"] = [round(ci[name].low, 4), round(ci[name].high, 4)]
        out["n_patients"] = len(set(groups))
        out["mean_pairwise_cosine"] = round(mean_pairwise_cosine(embeddings), 4)
    return out


def mean_pairwise_cosine(embeddings: np.ndarray) -> float:
    """Mean cosine similarity over distinct pairs: about 0 for a spread embedding, 1 for a collapsed one."""
    x = np.asarray(embeddings, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    n = x.shape[0]
    if n < 2:
        return float("nan")
    total = x.sum(0)
    return float((total @ total - n) / (n * (n - 1)))


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


def evaluate_split(model: torch.nn.Module, val: SplitData | None, setup: DeviceSetup, normal_index: int | None,
              intervals: bool = False) -> dict:
    if val is None or len(val) < 2:
        return {}
    emb = embed_images(model, val.float_images(), batch_size=256, device=setup)
    return validation_metrics(emb, val.labels, normal_index, val.groups if intervals else None)


def random_baseline(val: SplitData | None, dim: int, normal_index: int | None, seed: int) -> dict:
    from radsim.evaluation import random_embeddings

    if val is None or len(val) < 2:
        return {}
    return validation_metrics(random_embeddings(len(val), dim, seed=seed), val.labels, normal_index, val.groups)
