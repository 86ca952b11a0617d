"""A multi-label-aware batch sampler: most anchors get a positive, rare findings included.

Random batches from a skewed label distribution leave rare-finding items without any
positive, so triplet losses never see them. Here each batch is built from findings:
pick `findings_per_batch` findings, weighted by count**power (inverse square root by
default, so rare findings are picked far more often than their share), then draw
`items_per_finding` items that have each finding. An item drawn for finding f has at
least one in-batch positive whenever f's pool holds >= 2 items. Every finding with >= 2
items is picked at least once per epoch (a shuffled coverage queue goes first).

It works on an in-memory index of label vectors (for example the shard manifest joined
with the labels), yields lists of row indices, and is deterministic in (seed, epoch).
Under DDP each rank takes every `world_size`-th batch of the same global sequence.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from radsim.evaluation.labelsets import label_weights

from .labelsets import ML2_UNCERTAIN


class MultiLabelBatchSampler:
    """Yields batches (lists of row indices) built finding by finding (see module docstring).

    Wide on purpose (its __init__): like torch's samplers, each keyword is one knob of the batch draw, with a
    default; the training loop sets them from TrainConfig.
    """

    def __init__(
        self,
        labels: np.ndarray,
        batch_size: int = 64,
        findings_per_batch: int = 8,
        items_per_finding: int | None = None,
        *,
        power: float = -0.5,
        uncertain: float = ML2_UNCERTAIN,
        batches_per_epoch: int | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        sets = label_weights(labels, uncertain) > 0  # the findings each item has (radsim.evaluation.labelsets)
        if batch_size < 2:
            raise ValueError("batch_size must be >= 2")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world_size {world_size}")
        self.batch_size = int(batch_size)
        self.m = max(1, int(findings_per_batch))
        self.k = int(items_per_finding) if items_per_finding else max(2, self.batch_size // self.m)
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.epoch = 0
        self.n_items = sets.shape[0]
        self.pools = [np.flatnonzero(sets[:, f]) for f in range(sets.shape[1])]
        counts = np.array([len(p) for p in self.pools], dtype=np.float64)
        self.eligible = np.flatnonzero(counts >= 2)
        if self.eligible.size == 0:
            raise ValueError("no finding has 2 or more items: no batch can hold a positive pair")
        w = counts[self.eligible] ** power
        self.weights = w / w.sum()
        self.reachable = np.unique(np.concatenate([self.pools[f] for f in self.eligible]))
        if self.reachable.size < self.batch_size:
            raise ValueError(f"batch_size {self.batch_size} exceeds the {self.reachable.size} items "
                             "that share a finding with another item")
        self.batches_per_epoch = int(batches_per_epoch or max(1, self.reachable.size // self.batch_size))

    def set_epoch(self, epoch: int) -> None:
        """Change the sequence (call once per epoch, as with DistributedSampler)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(range(self.rank, self.batches_per_epoch, self.world_size))

    def _pick_findings(self, rng: np.random.Generator, queue: list[int]) -> list[int]:
        chosen = [queue.pop() for _ in range(min(self.m, len(queue)))]
        rest = np.setdiff1d(self.eligible, chosen)
        need = min(self.m - len(chosen), rest.size)
        if need > 0:
            w = self.weights[np.searchsorted(self.eligible, rest)]
            chosen += rng.choice(rest, size=need, replace=False, p=w / w.sum()).tolist()
        return chosen

    def _batch(self, rng: np.random.Generator, queue: list[int]) -> list[int]:
        batch: list[int] = []
        taken: set[int] = set()
        findings = self._pick_findings(rng, queue)
        misses = 0
        while len(batch) < self.batch_size:
            if not findings:  # every chosen finding used: draw one more, by weight
                findings = [int(rng.choice(self.eligible, p=self.weights))]
            f = findings.pop(0)
            pool = self.pools[f] if misses <= 10 * self.eligible.size else self.reachable
            free = pool[~np.isin(pool, list(taken))] if taken else pool
            if free.size == 0:
                misses += 1
                continue
            take = min(self.k, free.size, self.batch_size - len(batch))
            for i in rng.choice(free, size=take, replace=False).tolist():
                batch.append(i)
                taken.add(i)
        return batch

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        queue = rng.permutation(self.eligible).tolist()
        for b in range(self.batches_per_epoch):
            batch = self._batch(rng, queue)
            if b % self.world_size == self.rank:
                yield batch
