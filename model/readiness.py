"""Is there enough labelled data to train a first model? Checked before training, never inside it.

A hospital's first nights bring a few dozen exams. Training on them would fail ("fewer than one
batch"), so the pipeline asks first: the training split must hold at least one batch of frontal,
labelled images that share a finding with another image (the multi-label sampler needs positive
pairs). The batch may shrink to a power of two down to `MIN_BATCH`; below that, training is
deferred: the run labels and shards, says what it has and what it needs, and exits 0, and a later
run trains once enough exams have arrived.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from radsim.imaging.reader import FRONTAL

from .data import read_shard_info, split_labels
from .sampler import MultiLabelBatchSampler

MIN_BATCH = 32  # the smallest batch a first model is trained with (unless a smaller one is configured)


@dataclass(frozen=True)
class Readiness:
    ready: bool
    batch_size: int  # the batch to train with (the requested one, or a smaller power of two)
    requested: int
    train_images: int  # labelled frontal images in the training split
    pairable: int  # ... of which share a finding with another image
    floor: int = MIN_BATCH

    @property
    def message(self) -> str:
        have = (f"{self.train_images} labelled training images (PA/AP), {self.pairable} of them sharing a finding "
                "with another")
        if not self.ready:
            return (f"training deferred: {have}; a first model needs at least {self.floor} of both (a batch of "
                    f"{self.floor}, the floor); the configured batch is {self.requested}. Labels and shards are "
                    "recorded; a later run trains once enough exams have arrived")
        if self.batch_size < self.requested:
            return f"training with a batch of {self.batch_size} instead of {self.requested}: {have}"
        return f"training data: {have}"


def training_readiness(shards_dir: str | Path, batch_size: int, *, views: Sequence[str] | None = FRONTAL,
                       floor: int = MIN_BATCH) -> Readiness:
    info = read_shard_info(shards_dir)
    labels = split_labels(info, "train", views=views)
    n = int(labels.shape[0])
    try:
        pairable = int(MultiLabelBatchSampler(labels, 2, 1).reachable.size) if n >= 2 else 0
    except ValueError:  # no finding held by two images
        pairable = 0
    usable = min(n, pairable)
    size = batch_size if usable >= batch_size else (1 << (usable.bit_length() - 1) if usable else 0)
    ready = size >= min(floor, batch_size)
    return Readiness(ready, size if ready else 0, batch_size, n, pairable, floor)
