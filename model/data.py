"""Training data from shards: the split's labels and images, batched by the multi-label sampler.

Two ways to feed the same batches (DESIGN §7, §11):

- **memory** (default when it fits): the split's PNGs are decoded once into a uint8
  tensor [N, 1, S, S] (2,000 exams at 128 px is ~33 MB) and each batch is an index
  gather. Batch composition is then a pure function of (seed, epoch), so `--resume`
  reproduces an uninterrupted run exactly.
- **stream**: the webdataset reader (`radsim.imaging.reader.make_dataset`) decodes as it
  goes; samples are gathered into a buffer and the same multi-label sampler batches the
  buffer. Under DDP it reads with `resampled=True` + `with_epoch(n)` and
  `nodesplitter=wds.split_by_node`, so every rank gets the same number of batches. Order
  depends on webdataset's shard resampling, so a resumed streamed run is not bit-identical.

Bad input gets a clear UsageError: no manifest or an empty one, a label vector whose
length is not the vocabulary's, an image whose size is not the manifest's.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

from radsim.data_contracts import UsageError, table_metadata
from radsim.imaging.normalise import decode_png
from radsim.imaging.reader import FRONTAL
from radsim.imaging.manifest import MANIFEST_FILE, META_IMAGE_SIZE, META_KEY_ID
from radsim.imaging.tarshard import iter_tar_samples

from radsim.data_contracts.processes import preload_with

from .sampler import MultiLabelBatchSampler

# the streaming feeder's DataLoader workers: once torch is imported, a process's forkserver preloads
# them, even when its first pool was a sharding one (radsim.data_contracts.processes)
TRAINING_WORKERS = ("radsim.model.data", "radsim.imaging.reader")
preload_with("torch", TRAINING_WORKERS)

DATA_MODES = ("auto", "memory", "stream")
DEFAULT_CACHE_LIMIT = 4 << 30  # bytes of decoded uint8 images before "auto" streams instead


@dataclass(frozen=True)
class ShardInfo:
    """What a shard folder says about itself (manifest metadata) plus the manifest's hash."""

    shards_dir: Path
    image_size: int
    findings: list[str]
    vocabulary_name: str
    vocabulary_version: str
    key_id: str
    manifest_sha256: str
    n_samples: int

    def split_rows(self, split: str, views: Sequence[str] | None = FRONTAL, labelled_only: bool = True) -> list[dict]:
        """Manifest rows of one split (frontal, labelled by default), in manifest order."""
        rows = pq.read_table(self.shards_dir / MANIFEST_FILE,
                             columns=["sample_key", "patient_key", "shard", "split", "view_position", "labelled"]).to_pylist()
        return [r for r in rows if r["split"] == split and (not labelled_only or r["labelled"])
                and (views is None or r["view_position"] in views)]


def read_shard_info(shards_dir: str | Path) -> ShardInfo:
    """Read and check manifest.parquet: exists, lists samples, records image size and vocabulary."""
    shards_dir = Path(shards_dir)
    if not shards_dir.is_dir():
        raise UsageError(f"--shards {shards_dir}: no such folder")
    path = shards_dir / MANIFEST_FILE
    if not path.is_file():
        raise UsageError(f"{shards_dir} holds no {MANIFEST_FILE}: it is not a shard folder (run 'radsim shard' first)")
    pf = pq.ParquetFile(path)
    meta = table_metadata(pf.schema_arrow)
    if pf.metadata.num_rows == 0:
        raise UsageError(f"{shards_dir} is empty: its {MANIFEST_FILE} lists no samples")
    try:
        findings = json.loads(meta["radsim.vocabulary.findings"])
        size = int(meta[META_IMAGE_SIZE])
    except (KeyError, ValueError):
        raise UsageError(f"{path} lacks its image size or vocabulary metadata: rerun 'radsim shard'") from None
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return ShardInfo(shards_dir, size, list(findings), meta.get("radsim.vocabulary.name", ""),
                     meta.get("radsim.vocabulary.version", ""), meta.get(META_KEY_ID, ""), digest,
                     pf.metadata.num_rows)


def _label_vector(meta: dict, n_findings: int, where: str) -> list[float]:
    labels = meta.get("labels")
    if not isinstance(labels, list) or len(labels) != n_findings:
        got = len(labels) if isinstance(labels, list) else type(labels).__name__
        raise UsageError(f"{where}: label vector has {got} values but the shards' vocabulary has {n_findings} "
                         "findings; the shard does not match its manifest (rerun 'radsim shard' into a new folder)")
    return [math.nan if v is None else float(v) for v in labels]


def resize_images(images: torch.Tensor, size: int, chunk: int = 512) -> torch.Tensor:
    """uint8 [N,1,S,S] -> uint8 [N,1,size,size], antialiased (area-like when shrinking)."""
    if images.shape[-1] == size:
        return images
    out = torch.empty((images.shape[0], 1, size, size), dtype=torch.uint8)
    for i in range(0, images.shape[0], chunk):
        x = images[i:i + chunk].float()
        y = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[i:i + chunk] = y.round_().clamp_(0, 255).to(torch.uint8)
    return out


def float_images_at(images: torch.Tensor, size: int) -> torch.Tensor:
    """Float [N,1,S,S] images in [0,1] (decoded 8-bit PNGs) at the model's size, exactly as training sees them.

    Publication and `similar --image` go through here, so an embedding never depends on which path
    fed the image.
    """
    if images.shape[-1] == size:
        return images
    as_uint8 = images.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)
    return resize_images(as_uint8, size).float().div_(255.0)


@dataclass
class SplitData:
    """A split's images (uint8 [N,1,S,S]) and label vectors (float32 [N,F]: 1/0/-1/NaN)."""

    keys: list[str]
    images: torch.Tensor
    labels: np.ndarray
    groups: list[str] | None = None  # each sample's patient key: intervals resample patients

    @property
    def n_patients(self) -> int:
        return len(set(self.groups)) if self.groups is not None else len(self.keys)

    def __len__(self) -> int:
        return len(self.keys)

    def batch(self, index: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Float images in [0, 1] (as the webdataset reader gives them) and label vectors."""
        idx = torch.as_tensor(index, dtype=torch.long)
        return self.images[idx].float().div_(255.0), torch.from_numpy(self.labels[np.asarray(index)])

    def float_images(self) -> torch.Tensor:
        return self.images.float().div_(255.0)


def load_split(info: ShardInfo, split: str, *, views: Sequence[str] | None = FRONTAL, labelled_only: bool = True,
               image_size: int | None = None) -> SplitData:
    """Decode one split's samples into memory, in manifest order (reads only the shards that hold them)."""
    rows = info.split_rows(split, views, labelled_only)
    wanted = {r["sample_key"]: i for i, r in enumerate(rows)}
    n, s, n_f = len(rows), info.image_size, len(info.findings)
    images = torch.empty((n, 1, s, s), dtype=torch.uint8)
    labels = np.full((n, n_f), np.nan, dtype=np.float32)
    seen = 0
    for shard in dict.fromkeys(r["shard"] for r in rows):
        path = info.shards_dir / shard
        if not path.is_file():
            raise UsageError(f"{path} is listed in {MANIFEST_FILE} but missing")
        for sample in iter_tar_samples(path):
            i = wanted.get(sample["__key__"])
            if i is None:
                continue
            where = f"{shard}:{sample['__key__']}"
            labels[i] = _label_vector(json.loads(sample["json"]), n_f, where)
            pixels = decode_png(sample["png"])
            if pixels.shape != (s, s):
                raise UsageError(f"{where}: image is {pixels.shape[1]}x{pixels.shape[0]} px but {MANIFEST_FILE} "
                                 f"records {s} px")
            images[i, 0] = torch.from_numpy(np.array(pixels, dtype=np.uint8))
            seen += 1
    if seen != n:
        raise UsageError(f"{info.shards_dir}: {MANIFEST_FILE} lists {n} {split} samples but the shards hold {seen}")
    if image_size and image_size != s:
        images = resize_images(images, image_size)
    return SplitData([r["sample_key"] for r in rows], images, labels, [r["patient_key"] for r in rows])


def split_labels(info: ShardInfo, split: str, **kw) -> np.ndarray:
    """Label vectors of a split without keeping images (cheap: PNGs are skipped, not decoded)."""
    rows = info.split_rows(split, **kw)
    wanted = {r["sample_key"]: i for i, r in enumerate(rows)}
    labels = np.full((len(rows), len(info.findings)), np.nan, dtype=np.float32)
    for shard in dict.fromkeys(r["shard"] for r in rows):
        for sample in iter_tar_samples(info.shards_dir / shard):
            i = wanted.get(sample["__key__"])
            if i is not None:
                labels[i] = _label_vector(json.loads(sample["json"]), len(info.findings), f"{shard}:{sample['__key__']}")
    return labels


def make_sampler(labels: np.ndarray, batch_size: int, *, seed: int, rank: int = 0, world_size: int = 1,
                 accumulate: int = 1, findings_per_batch: int | None = None) -> MultiLabelBatchSampler:
    """The multi-label sampler with a batch count that every rank shares (no DDP hang).

    One optimiser step takes `world_size * accumulate` consecutive batches of the global
    sequence (rank r takes every world_size-th); the batch count is rounded down to a
    multiple of that, so every rank runs the same number of whole steps. The same global
    sequence therefore feeds 2 ranks x batch b and 1 process accumulating 2 x b.
    """
    m = findings_per_batch or max(2, min(8, batch_size // 4))
    unit = world_size * max(1, accumulate)
    probe = MultiLabelBatchSampler(labels, batch_size, m, seed=seed)
    per_epoch = max(unit, probe.batches_per_epoch // unit * unit)
    return MultiLabelBatchSampler(labels, batch_size, m, batches_per_epoch=per_epoch, seed=seed, rank=rank,
                                  world_size=world_size)


def choose_mode(mode: str, n_images: int, image_size: int, cache_limit: int = DEFAULT_CACHE_LIMIT) -> str:
    if mode not in DATA_MODES:
        raise UsageError(f"unknown data mode {mode!r}: use {', '.join(DATA_MODES)}")
    if mode != "auto":
        return mode
    return "memory" if n_images * image_size * image_size <= cache_limit else "stream"


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

    def __init__(self, info: "ShardInfo", samples: int, seed: int, chunk: int = 32):
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
        loader = torch.utils.data.DataLoader(data, batch_size=None, num_workers=self.workers, pin_memory=self.pin_memory,
                                             prefetch_factor=self.prefetch, multiprocessing_context=context)
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
