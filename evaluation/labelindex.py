"""The label sets of an evaluation as bit masks, with every per-set quantity a metric's chance needs.

Why: every retrieval metric asks the same two questions of a (query, neighbour) pair — do they
share a label, and what is their Jaccard similarity — and the permutation nulls ask them a thousand
times with the labels moved among the items. A label set packed into 64-bit words answers both by
a bitwise AND and a popcount, and anything that depends only on a set and on the multiset of all
sets (how many others share a label with it, the ideal DCG of its ranking, its mean gain) is
computed once per *distinct* set: moving labels among items never changes that multiset.
numpy only.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .labelsets import as_label_matrix, discounts

#: most distinct label sets whose pairwise tables are kept (u x u bools and float64s: 2048 sets = 38 MB)
TABLE_SETS = 2048


def _pack(lab: np.ndarray) -> np.ndarray:
    """Each row of a bool matrix as little-endian uint64 words: (n, ceil(F / 64))."""
    n, f = lab.shape
    words = max(1, -(-f // 64))
    padded = np.zeros((n, words * 64), dtype=bool)
    padded[:, :f] = lab
    return np.packbits(padded, axis=1, bitorder="little").view(np.uint64).reshape(n, words)


def popcount(words: np.ndarray) -> np.ndarray:
    """Set bits summed over the last axis (the words of one mask)."""
    return np.bitwise_count(words).sum(-1, dtype=np.int64)


@dataclass
class LabelIndex:
    """Distinct label sets, each item's set, and the per-set statistics the metrics and their chance use."""

    lab: np.ndarray  # (n, F) bool, the items' labels
    masks: np.ndarray  # (u, W) uint64, one row per distinct set
    item_set: np.ndarray  # (n,) each item's set id
    counts: np.ndarray  # (u,) items holding each set
    size: np.ndarray  # (u,) labels in each set
    relevant: np.ndarray  # (u,) R: the other items that share >= 1 label with a holder of the set
    mean_gain: np.ndarray  # (u,) mean Jaccard gain over the other items
    finding_counts: np.ndarray  # (F,) items having each finding
    _ideal: dict = field(default_factory=dict)  # caches: ideal DCG per k, the pairwise tables

    @property
    def n_items(self) -> int:
        return int(self.lab.shape[0])

    @classmethod
    def build(cls, labels: np.ndarray) -> LabelIndex:
        lab = as_label_matrix(labels)
        packed = _pack(lab)
        masks, item_set, counts = np.unique(packed, axis=0, return_inverse=True, return_counts=True)
        item_set = item_set.reshape(-1)
        size = popcount(masks)
        relevant = np.zeros(len(masks), dtype=np.int64)
        gain_sum = np.zeros(len(masks))
        for rows, inter in _set_pairs(masks):
            own = size[rows] > 0  # a non-empty set shares every label with its own holder
            relevant[rows] = ((inter > 0) * counts).sum(1) - own
            jac = _jaccard(inter, size[rows][:, None], size[None, :])
            gain_sum[rows] = (jac * counts).sum(1) - own
        others = max(lab.shape[0] - 1, 1)
        return cls(lab, masks, item_set, counts, size, relevant, gain_sum / others, lab.sum(0))

    def ideal_dcg(self, k: int) -> np.ndarray:
        """(u,) the best DCG@k a holder of each set can reach: its k highest gains among the others."""
        if k not in self._ideal:
            self._ideal[k] = self._ideal_dcg(k)
        return self._ideal[k]

    def _ideal_dcg(self, k: int) -> np.ndarray:
        disc = discounts(k)
        out = np.zeros(len(self.masks))
        for rows, inter in _set_pairs(self.masks):
            jac = _jaccard(inter, self.size[rows][:, None], self.size[None, :])
            for row, gains in zip(rows, jac):
                counts = self.counts.copy()
                counts[row] -= 1  # the query itself is not among its neighbours
                order = np.argsort(-gains, kind="stable")
                ranks = np.repeat(gains[order], counts[order])[:k]
                out[row] = float((ranks * disc[: len(ranks)]).sum())
        return out

    def shares(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Do the sets with ids `a` and `b` (broadcastable arrays) share >= 1 label?"""
        table = self._tables()
        if table is not None:
            return table[0][a, b]
        return (self.masks[a] & self.masks[b]).any(-1)

    def jaccard(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Jaccard similarity of the sets with ids `a` and `b` (0 where both are empty)."""
        table = self._tables()
        if table is not None:
            return table[1][a, b]
        return _jaccard(popcount(self.masks[a] & self.masks[b]), self.size[a], self.size[b])

    def _tables(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(shares, Jaccard) between every pair of distinct sets, when there are few enough to tabulate.

        A gather from a u x u table is what the permutation nulls repeat a thousand times; the
        bitwise path is for the rare evaluation with more than TABLE_SETS distinct label sets.
        """
        if "tables" not in self._ideal and len(self.masks) <= TABLE_SETS:
            inter = popcount(self.masks[:, None, :] & self.masks[None, :, :])
            self._ideal["tables"] = (inter > 0, _jaccard(inter, self.size[:, None], self.size[None, :]))
        return self._ideal.get("tables")


def _jaccard(inter: np.ndarray, size_a: np.ndarray, size_b: np.ndarray) -> np.ndarray:
    union = size_a + size_b - inter
    return np.divide(inter, union, out=np.zeros(inter.shape), where=union > 0)


def _set_pairs(masks: np.ndarray, budget: int = 4_000_000):
    """Chunks of (set ids, their intersections with every set)."""
    u = len(masks)
    step = max(1, budget // max(u, 1))
    for start in range(0, u, step):
        rows = np.arange(start, min(u, start + step))
        inter = popcount(masks[rows][:, None, :] & masks[None, :, :])
        yield rows, inter
