"""The one costly step of every retrieval metric: each query's nearest neighbours, computed once.

Why separate: the metrics depend on the embedding only through each query's ranking of the
others. Computed once, the ranking serves the observed labels, a thousand label permutations (the
metrics' true null, radsim.evaluation.nulls) and every k, with no second pass over the scores.
The ranking is kept to depth `kmax`, and to depth `r_cap` (the most relevant items any query can
have) for mAP@R when that fits `ORDER_BUDGET`; beyond it mAP@R gets no permutation null.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .neighbours import DEFAULT_METRIC, Metric, as_matrix, score_chunks, top_k

#: most (query, rank) entries kept for mAP@R's permutations (int32: 4 bytes each)
ORDER_BUDGET = 25_000_000
#: scores ranked at once: a chunk of queries x every item; its sort temporaries (int64 indices,
#: float copies) are a few times this, so memory stays ~100 MB however large the gallery
RANK_CHUNK_ENTRIES = 4_000_000


def rank_chunk(n_items: int, chunk_size: int | None = None) -> int:
    """Queries per chunk when ranking a gallery of `n_items` (an explicit `chunk_size` wins)."""
    return chunk_size or max(1, RANK_CHUNK_ENTRIES // max(n_items, 1))


@dataclass(frozen=True)
class Ranking:
    """Each query's neighbours, best first (leave-one-out: a query never ranks itself)."""

    n_items: int
    queries: np.ndarray  # (Q,) item index of each query
    neighbours: np.ndarray  # (Q, depth) int32; depth = max(kmax, r_cap) where the order is kept

    @property
    def depth(self) -> int:
        return int(self.neighbours.shape[1])


def rank(embeddings: np.ndarray, depth: int, *, metric: Metric = DEFAULT_METRIC, queries: np.ndarray | None = None,
         chunk_size: int | None = None) -> Ranking:
    """The `depth` nearest neighbours of each query (every item, or `queries`), in score chunks."""
    emb = as_matrix(embeddings)
    n = emb.shape[0]
    if n < 2:
        raise ValueError("need at least 2 items for leave-one-out retrieval")
    depth = max(1, min(int(depth), n - 1))
    q_parts, n_parts = [], []
    for qi, scores in score_chunks(emb, metric, queries, rank_chunk(n, chunk_size)):
        q_parts.append(qi)
        n_parts.append(top_k(scores, depth)[:, :depth].astype(np.int32))
    if not q_parts:
        return Ranking(n, np.empty(0, np.int64), np.empty((0, depth), np.int32))
    return Ranking(n, np.concatenate(q_parts).astype(np.int64), np.concatenate(n_parts))


def order_depth(n_queries: int, r_cap: int, kmax: int) -> int:
    """How deep to keep each query's ranking: to r_cap for mAP@R if it fits the budget, else kmax."""
    return max(kmax, r_cap) if n_queries * max(kmax, r_cap) <= ORDER_BUDGET else kmax
