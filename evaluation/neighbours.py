"""Leave-one-out similarity search over an embedding matrix, in query chunks.

Chunked so that 100k x 128 never builds the n x n score matrix: each chunk holds
`chunk_size x n` scores, sized from a memory budget. numpy only (this package never
imports torch), so training's validation and the publish stage share one implementation.

Ranking rule: higher score = closer. The query itself is always excluded. Ties are
broken by the lower gallery index (exactly in the full sort; in the top-k fast path a
tie that straddles the k-th position may be resolved either way).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import numpy as np

Metric = Literal["cosine", "l2"]
DEFAULT_METRIC: Metric = "cosine"  # the embeddings are compared by angle unless told otherwise

#: Scores per chunk (float32 elements); 16M elements = 64 MB of scores per chunk.
DEFAULT_CHUNK_ELEMENTS = 16_000_000


def as_matrix(x: np.ndarray, name: str = "embeddings") -> np.ndarray:
    """A finite, non-empty 2-D float32 matrix, or a ValueError that says what is wrong."""
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D matrix, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contain non-finite values")
    return arr


def l2_normalise(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


def _prepare(embeddings: np.ndarray, metric: Metric) -> tuple[np.ndarray, np.ndarray | None]:
    emb = as_matrix(embeddings)
    if metric == "cosine":
        return l2_normalise(emb), None
    if metric == "l2":
        # -||q - g||^2 = 2 q.g - ||g||^2 - ||q||^2; the last term is constant per query.
        return emb, (emb.astype(np.float64) ** 2).sum(1).astype(np.float32)
    raise ValueError(f"unknown metric {metric!r}: use 'cosine' or 'l2'")


def _chunk_size(n: int, chunk_size: int | None) -> int:
    if chunk_size is not None:
        return max(1, int(chunk_size))
    return max(1, min(n, DEFAULT_CHUNK_ELEMENTS // max(n, 1)))


def _query_indices(n: int, queries: np.ndarray | None) -> np.ndarray:
    if queries is None:
        return np.arange(n)
    q = np.asarray(queries, dtype=np.int64).ravel()
    if q.size and (q.min() < 0 or q.max() >= n):
        raise ValueError(f"query indices must lie in [0, {n})")
    return q


def score_chunks(
    embeddings: np.ndarray,
    metric: Metric = DEFAULT_METRIC,
    queries: np.ndarray | None = None,
    chunk_size: int | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield `(query_idx [c], scores [c, n])` with each query's own column set to -inf."""
    emb, sqnorm = _prepare(embeddings, metric)
    n = emb.shape[0]
    q_all = _query_indices(n, queries)
    step = _chunk_size(n, chunk_size)
    for start in range(0, len(q_all), step):
        qi = q_all[start : start + step]
        scores = emb[qi] @ emb.T
        if sqnorm is not None:
            scores = 2.0 * scores - sqnorm[None, :]
        scores[np.arange(len(qi)), qi] = -np.inf
        yield qi, scores


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k highest scores per row, best first (ties: lower index first)."""
    n = scores.shape[1]
    k = min(k, n)
    if k >= n:
        return np.argsort(-scores, axis=1, kind="stable")
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    return np.take_along_axis(part, order, axis=1)


def full_ranking(scores: np.ndarray) -> np.ndarray:
    """All columns per row, best first (ties: lower index first)."""
    return np.argsort(-scores, axis=1, kind="stable")


def nearest_neighbours(
    embeddings: np.ndarray,
    k: int,
    metric: Metric = DEFAULT_METRIC,
    queries: np.ndarray | None = None,
    chunk_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-out k nearest neighbours: `(indices [q, k'], scores [q, k'])`, k' = min(k, n-1)."""
    n = np.asarray(embeddings).shape[0]
    kk = min(int(k), n - 1)
    if kk < 1:
        raise ValueError("need at least 2 embeddings for leave-one-out retrieval")
    idx_parts, score_parts = [], []
    for _qi, scores in score_chunks(embeddings, metric, queries, chunk_size):
        idx = top_k(scores, kk)
        idx_parts.append(idx)
        score_parts.append(np.take_along_axis(scores, idx, axis=1))
    if not idx_parts:
        return np.empty((0, kk), np.int64), np.empty((0, kk), np.float32)
    return np.concatenate(idx_parts), np.concatenate(score_parts)


def random_embeddings(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Unit-norm Gaussian embeddings: the `random_value` baseline of every metric."""
    rng = np.random.default_rng(seed)
    return l2_normalise(rng.standard_normal((n, dim)).astype(np.float32))
