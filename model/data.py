"""Training data from shards: the split's labels and images, batched by the multi-label sampler.

Two ways to feed the same batches (DESIGN §7, §11), both in radsim.model.feeders:

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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

from radsim.data_contracts import UsageError, table_metadata
from radsim.imaging.manifest import MANIFEST_FILE, META_IMAGE_SIZE, META_KEY_ID
from radsim.imaging.normalise import decode_png
from radsim.imaging.reader import FRONTAL
from radsim.imaging.tarshard import iter_tar_samples

from .sampler import MultiLabelBatchSampler

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
        rows = pq.read_table(
            self.shards_dir / MANIFEST_FILE,
            columns=["sample_key", "patient_key", "shard", "split", "view_position", "labelled"],
        ).to_pylist()
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
                labels[i] = _label_vector(
                    json.loads(sample["json"]), len(info.findings), f"{shard}:{sample['__key__']}"
                )
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
