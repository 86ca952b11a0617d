"""Validation during training: P@10 and normal-vs-abnormal AUC with their true nulls, intervals and collapse.

What the promotion gates read (radsim.model.gates). numpy and radsim.evaluation, plus
torch only to embed the validation split.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from radsim.evaluation.evaluate import EvaluationOptions

from .data import SplitData
from .embed import embed_images
from .train_core import DeviceSetup

# ----------------------------------------------------------------------------- validation
#: the final validation's judged metrics: P@10 and the normal AUC, with nulls, intervals and random draws
VALIDATION_OPTIONS = EvaluationOptions(ks=(10,), ndcg_k=None, with_map=False, with_findings=False,
                                       with_clustering=False, replicates=500)
JUDGED = ("precision_at_10", "normal_auc")


def validation_metrics(embeddings: np.ndarray, labels: np.ndarray, normal_index: int | None,
                       groups: Sequence[str] | None = None) -> dict[str, Any]:
    """P@10 and the normal-vs-abnormal kNN AUC on the validation split (radsim.evaluation).

    Without `groups`, the values alone (each epoch's model selection). With `groups` (each item's
    patient), the judged metrics the promotion gates read (radsim.model.gates): each value with
    its true null (`_chance`), interval (`_ci`), verdict (`_verdict`), the queries and patients it
    rests on, the random-embedding baseline over several draws (`random_embedding`), and the mean
    pairwise cosine of the embeddings (near 1: the embedding collapsed).
    """
    from radsim.evaluation import RetrievalSpec, retrieval_scores

    if embeddings.shape[0] < 2:
        return {}
    if groups is None:
        s = retrieval_scores(embeddings, labels, RetrievalSpec(ks=(10,), ndcg_ks=(), finding_k=None,
                                                               normal_index=normal_index, with_map=False))
        return {"precision_at_10": _num(s.precision_at_k[10]), "normal_auc": _num(s.normal_auc),
                "n_items": int(s.n_items), "n_queries": int(s.n_queries)}
    return judged_metrics(embeddings, labels, normal_index, groups)


def judged_metrics(embeddings: np.ndarray, labels: np.ndarray, normal_index: int | None,
                   groups: Sequence[str]) -> dict[str, Any]:
    from radsim.evaluation import evaluate_embeddings

    records = evaluate_embeddings(embeddings, labels, model_version="", split="val", normal_index=normal_index,
                                  groups=groups, options=VALIDATION_OPTIONS)
    out: dict[str, Any] = {"n_items": int(embeddings.shape[0]), "n_patients": len(set(groups)),
                           "mean_pairwise_cosine": round(mean_pairwise_cosine(embeddings), 4), "random_embedding": {}}
    for r in records:
        name = "precision_at_10" if r.metric == "precision_at_k" else r.metric
        if name not in JUDGED:
            continue
        out.update({name: _num(r.value), f"{name}_chance": _num(r.chance_value), f"{name}_verdict": r.verdict,
                    f"{name}_queries": r.n_queries, f"{name}_patients": r.n_patients})
        if r.judged:
            out[f"{name}_ci"] = [round(r.ci_low, 4), round(r.ci_high, 4)]
        else:
            out[f"{name}_note"] = r.note
        out["random_embedding"].update({name: _num(r.random_value), f"{name}_sd": _num(r.random_sd)})
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
    emb = embed_images(model, val.float_images(), device=setup)
    return validation_metrics(emb, val.labels, normal_index, val.groups if intervals else None)
