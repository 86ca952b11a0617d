"""The two training feeders (DESIGN §7, §11): decoded splits in memory, or the webdataset stream.

radsim.model.data reads the shards' manifest and splits; this module turns them into an epoch's
batches. The memory feeder's batches are a pure function of (seed, epoch); the stream feeder's
decode in DataLoader worker processes, which the forkserver preloads with torch imported.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from radsim.data_contracts import UsageError
from radsim.data_contracts.processes import preload_with
from radsim.imaging.reader import FRONTAL

from .data import ShardInfo, SplitData, make_sampler
from .sampler import MultiLabelBatchSampler

# the streaming feeder's DataLoader workers: once torch is imported, a process's forkserver preloads
# them, even when its first pool was a sharding one (radsim.data_contracts.processes)
TRAINING_WORKERS = ("radsim.model.feeders", "radsim.imaging.reader")
preload_with("torch", TRAINING_WORKERS)


def prefetch(items: Iterator, depth: int = 4) -> Iterator:
    """Run `items` in a daemon thread, `depth` items ahead; errors re-raise in the consumer."""
    import queue
    import threading

    if depth <= 0:
        yield from items
        return
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def work() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put((None, item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((None, done))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            q.put((exc, None))

    thread = threading.Thread(target=work, name="radsim-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            exc, item = q.get()
            if exc is not None:
                raise exc
            if item is done:
                return
            yield item
    finally:
        stop.set()


class MemoryFeeder:
    """Batches from a decoded split: each epoch's batches are a pure function of (seed, epoch)."""

    mode = "memory"

    def __init__(self, data: SplitData, sampler: MultiLabelBatchSampler):
        self.data, self.sampler = data, sampler

    def __len__(self) -> int:
        return len(self.sampler)

    def epoch(self, epoch: int, skip: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.sampler.set_epoch(epoch)
        for i, index in enumerate(self.sampler):
            if i >= skip:
                yield self.data.batch(index)


class _SampleChunks(torch.utils.data.IterableDataset):
    """One worker's share of an epoch's stream: decoded (images [c,1,S,S] uint8, labels [c,F]) chunks.

    Each DataLoader worker draws shards with replacement (webdataset `resampled`) under its own
    seed, so a worker never starves when there are fewer shards than workers; chunks amortise
    the cost of handing tensors between processes.
    """

    def __init__(self, info: ShardInfo, samples: int, seed: int, chunk: int = 32):
        super().__init__()
        self.info, self.samples, self.seed, self.chunk = info, samples, seed, chunk

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        from radsim.imaging.reader import SampleFilter, StreamOrder, make_dataset

        worker = torch.utils.data.get_worker_info()
        workers, wid = (worker.num_workers, worker.id) if worker is not None else (1, 0)
        share = math.ceil(self.samples / workers)
        ds = make_dataset(self.info.shards_dir, select=SampleFilter("train", labelled_only=True, views=FRONTAL),
                          order=StreamOrder(shuffle=min(StreamOrder.shuffle, share), resampled=True, epoch_size=share,
                                            seed=self.seed * 131 + wid), uint8=True)
        n_f = len(self.info.findings)
        xs: list[torch.Tensor] = []
        ys: list[torch.Tensor] = []
        for s in ds:
            if s["labels"].numel() != n_f:
                raise UsageError(f"{s['__key__']}: label vector has {s['labels'].numel()} values but the "
                                 f"shards' vocabulary has {n_f} findings")
            xs.append(s["image"])
            ys.append(s["labels"])
            if len(xs) == self.chunk:
                yield torch.stack(xs), torch.stack(ys)
                xs, ys = [], []
        if xs:
            yield torch.stack(xs), torch.stack(ys)


def loader_workers(requested: int | None) -> int:
    """DataLoader workers of the streaming feeder: as asked, else one per core left, at most 4."""
    if requested is not None:
        return int(requested)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(4, cores - 1))


class StreamFeeder:
    """Batches from the webdataset reader, decoded by DataLoader workers, batched by the multi-label sampler.

    PNG decoding runs in `workers` processes (torch DataLoader; pinned memory on CUDA), so the
    input rate scales with cores instead of one thread's. Each rank takes exactly
    `len(self)` batches per epoch, so all DDP ranks run the same number of steps.

    Wide on purpose (its __init__): the sampler's knobs (batch, seed, rank, world size, accumulation) and the
    DataLoader's (buffer, prefetch, workers, pinned memory), each with a default; TrainConfig carries them to
    the one call in radsim.model.train.
    """

    mode = "stream"

    def __init__(self, info: ShardInfo, labels: np.ndarray, batch_size: int, *, seed: int, rank: int = 0,
                 world_size: int = 1, accumulate: int = 1, image_size: int | None = None, buffer: int = 2048,
                 prefetch: int = 4, workers: int | None = None, pin_memory: bool = False):
        self.prefetch = prefetch
        self.info, self.batch_size, self.seed = info, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.workers, self.pin_memory = loader_workers(workers), pin_memory
        self.image_size = image_size if image_size and image_size != info.image_size else None
        self.n_batches = len(make_sampler(labels, batch_size, seed=seed, rank=rank, world_size=world_size,
                                          accumulate=accumulate))
        self.buffer = math.ceil(max(buffer, 4 * batch_size) / batch_size) * batch_size  # whole batches

    def __len__(self) -> int:
        return self.n_batches

    def chunks(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Decoded sample chunks, at least len(self) * batch_size samples in all."""
        n = self.n_batches * self.batch_size
        data = _SampleChunks(self.info, n, seed=self.seed * 100_003 + epoch * 1009 + self.rank * 31)
        if self.workers == 0:
            yield from prefetch(iter(data), depth=self.prefetch)  # one background thread (PNG decode drops the GIL)
            return
        from radsim.data_contracts.processes import worker_context

        context = worker_context(TRAINING_WORKERS)  # workers fork with torch imported: no import per epoch
        loader = torch.utils.data.DataLoader(
            data,
            batch_size=None,
            num_workers=self.workers,
            pin_memory=self.pin_memory,
            prefetch_factor=self.prefetch,
            multiprocessing_context=context,
        )
        yield from loader

    def epoch(self, epoch: int, skip: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        made = 0
        buf_x: list[torch.Tensor] = []
        buf_y: list[torch.Tensor] = []

        def flush(chunk: int, want: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            nonlocal made
            x, y = torch.cat(buf_x).float().div_(255.0), torch.cat(buf_y)  # as the memory path's batches
            if self.image_size:
                x = F.interpolate(x, size=(self.image_size,) * 2, mode="bilinear", antialias=True)
            try:
                sampler = MultiLabelBatchSampler(y.numpy(), self.batch_size, max(2, min(8, self.batch_size // 4)),
                                                 batches_per_epoch=want, seed=self.seed)
                sampler.set_epoch(epoch * 10_007 + chunk)
                batches = list(sampler)
            except ValueError:  # a buffer without positive pairs: plain consecutive batches
                batches = [[j % len(x) for j in range(i * self.batch_size, (i + 1) * self.batch_size)]
                           for i in range(want)]
            for index in batches:
                if made >= skip:
                    yield x[index], y[index]
                made += 1
            buf_x.clear()
            buf_y.clear()

        chunk, held = 0, 0
        for x, y in self.chunks(epoch):
            if made >= self.n_batches:
                break
            buf_x.append(x)
            buf_y.append(y)
            held += len(x)
            if held >= self.buffer:
                yield from flush(chunk, min(self.n_batches - made, held // self.batch_size))
                chunk, held = chunk + 1, 0
        if made < self.n_batches:
            if not buf_x:
                raise UsageError(f"{self.info.shards_dir} holds no labelled frontal training samples")
            yield from flush(chunk, self.n_batches - made)  # the last buffer makes up every missing batch
