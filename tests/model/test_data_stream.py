"""The streaming feeder (DataLoader workers): the memory path's (image, label) pairs, equal steps on every rank."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from radsim.model.data import load_split, read_shard_info, split_labels
from radsim.model.feeders import StreamFeeder


def _digest(image: torch.Tensor) -> str:
    pixels = torch.round(image.float() * 255).to(torch.uint8) if image.is_floating_point() else image
    return hashlib.sha256(pixels.numpy().tobytes()).hexdigest()


@pytest.fixture(scope="module")
def memory(train_shards):
    info = read_shard_info(train_shards["shards"])
    data = load_split(info, "train")
    return info, {_digest(data.images[i]): data.labels[i] for i in range(len(data))}


def _memory_coverage(info, epochs: int) -> int:
    from radsim.model.data import make_sampler
    from radsim.model.feeders import MemoryFeeder

    data = load_split(info, "train")
    feeder = MemoryFeeder(data, make_sampler(data.labels, 16, seed=1))
    return len({_digest(img) for e in range(epochs) for x, _ in feeder.epoch(e) for img in x})


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_pairs_are_the_memory_paths_pairs(memory, workers):
    info, pairs = memory
    feeder = StreamFeeder(info, split_labels(info, "train"), 16, seed=1, workers=workers)
    seen: set[str] = set()
    for epoch in range(3):
        batches = 0
        for x, y in feeder.epoch(epoch):
            assert x.shape == (16, 1, info.image_size, info.image_size) and y.shape == (16, len(info.findings))
            for image, label in zip(x, y):
                key = _digest(image)
                assert key in pairs, "a streamed image that the memory path does not hold"
                assert np.array_equal(np.nan_to_num(label.numpy(), nan=-9), np.nan_to_num(pairs[key], nan=-9)), \
                    "a streamed image with another image's labels"
                seen.add(key)
            batches += 1
        assert batches == len(feeder) > 0
    # the multi-label sampler draws rare findings more often, so an epoch repeats images on both paths;
    # over the same epochs, the stream reaches about as many of the split's images as memory does
    assert len(seen) >= 0.7 * _memory_coverage(info, 3)


def test_every_rank_runs_the_same_number_of_steps(train_shards):
    info = read_shard_info(train_shards["shards"])
    labels = split_labels(info, "train")
    counts = []
    for rank in range(3):
        feeder = StreamFeeder(info, labels, 16, seed=0, rank=rank, world_size=3, workers=1)
        counts.append((len(feeder), sum(1 for _ in feeder.epoch(0)), sum(1 for _ in feeder.epoch(1, skip=2))))
    assert len({c[0] for c in counts}) == 1 and all(c[1] == c[0] and c[2] == c[0] - 2 for c in counts), counts


def test_training_on_the_stream_path_runs_and_records_it(train_shards, tmp_path):
    from radsim.model.train import train_embedding_model

    result = train_embedding_model(train_shards["shards"], tmp_path / "m", data="stream", loader_workers=2,
                                   batch_size=16, epochs=1, max_steps=3, device="cpu", threads=1, progress=False)
    assert result.steps == 3 and result.card.training["data"] == "stream"
