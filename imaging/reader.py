"""Reading shards back: the WebDataset pipeline training uses, and an ordered iterator for embedding.

torch and webdataset are imported inside the functions, so importing radsim.imaging stays
light. The shard list comes from manifest.parquet, never from a glob: a shard left by a
crashed run (not in the manifest) is never read.

DDP (DESIGN §11): `nodesplitter=wds.split_by_node` plus `resampled=True` and
`with_epoch(n)` gives every rank the same number of samples, so no rank waits forever.
"""
from __future__ import annotations

import functools
import json
import math
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from radsim.data_contracts import UsageError

from .manifest import MANIFEST_FILE
from .splits import SPLITS
from .tarshard import iter_tar_samples

FRONTAL = ("PA", "AP")
SPLIT_NAMES = SPLITS  # the splits a sample can be in (radsim.imaging.splits)


def shard_paths(shard_dir: str | Path) -> list[str]:
    """The shards the manifest lists, in write order."""
    path = Path(shard_dir) / MANIFEST_FILE
    if not path.exists():
        raise UsageError(f"no {MANIFEST_FILE} in {shard_dir}: run 'radsim shard' first")
    names = pq.read_table(path, columns=["shard"]).column("shard").to_pylist()
    return [str(Path(shard_dir) / n) for n in dict.fromkeys(names)]


def _keep(meta: dict[str, Any], split: str | None, labelled_only: bool, views: Sequence[str] | None) -> bool:
    if split is not None and meta["split"] != split:
        return False
    if labelled_only and not meta["labelled"]:
        return False
    if views is not None and meta["view_position"] not in views:
        return False
    return True


def _label_values(labels: Sequence[int | None], null_label: float) -> list[float]:
    return [null_label if v is None else float(v) for v in labels]


def _selected(sample: dict[str, Any], *, split: str | None, labelled_only: bool, views: Sequence[str] | None) -> bool:
    return _keep(json.loads(sample["json"]), split, labelled_only, views)


def _as_tensors(sample: dict[str, Any], *, uint8: bool, augment: Callable[[Any], Any] | None,
                null_label: float) -> dict[str, Any]:
    """A shard sample as the training dict: image tensor (uint8 or float), label vector and metadata."""
    import torch

    from .normalise import decode_png

    meta = json.loads(sample["json"])
    if uint8:
        image = torch.from_numpy(decode_png(sample["png"]).copy()).unsqueeze(0)
    else:
        image = torch.from_numpy(sample["png"]).to(torch.float32).unsqueeze(0)
    if augment is not None:
        image = augment(image)
    return {
        "__key__": sample["__key__"],
        "image": image,
        "labels": torch.tensor(_label_values(meta["labels"], null_label), dtype=torch.float32),
        "labelled": bool(meta["labelled"]),
        "split": meta["split"],
        "view_position": meta["view_position"],
    }


@dataclass(frozen=True)
class SampleFilter:
    """Which samples a dataset yields."""

    split: str | None = "train"  # train, val or test; None: every split
    labelled_only: bool = False  # drop unlabelled exams
    views: Sequence[str] | None = None  # e.g. FRONTAL keeps frontal films only; None: every view


@dataclass(frozen=True)
class StreamOrder:
    """How a dataset draws its samples."""

    shuffle: int = 1000  # sample buffer size (0: stored order)
    shardshuffle: int = 100  # shard buffer size, when shuffling and not resampling
    resampled: bool = False  # draw shards with replacement for ever: give `epoch_size` too
    epoch_size: int | None = None  # samples per epoch and per worker
    seed: int | None = None


def make_dataset(shard_dir: str | Path, *, select: SampleFilter = SampleFilter(), order: StreamOrder = StreamOrder(),
                 null_label: float = math.nan, augment: Callable[[Any], Any] | None = None,
                 uint8: bool = False) -> Any:
    """A webdataset pipeline of samples
    {"__key__", "image" [1,S,S] float, "labels" [F] float, "labelled", "split", "view_position"}.

    - `select` (split, labelled_only, views) says which samples; `order` (shuffle, shardshuffle,
      resampled, epoch_size, seed) how they are drawn: `resampled=True` draws shards with
      replacement for ever, so give `epoch_size` (samples per epoch and per worker).
    - `null_label`: value for "not mentioned" labels (nan to mask them in the loss, or 0).
    - `augment`: called on each image tensor after decoding (training-time augmentation).
    - `uint8=True` keeps the image as the stored 8-bit values ([1,S,S] uint8): a quarter of the
      bytes to hand between DataLoader workers and to copy to a GPU; `x.float() / 255` is exactly
      the float image.
    """
    import webdataset as wds

    split, seed = select.split, order.seed
    if split is not None and split not in SPLIT_NAMES:
        raise UsageError(f"split must be one of {SPLIT_NAMES} or None, got {split!r}")
    urls = shard_paths(shard_dir)
    if not urls:
        raise UsageError(f"{shard_dir} has no shards")

    chosen = functools.partial(_selected, split=split, labelled_only=select.labelled_only, views=select.views)
    to_tensors = functools.partial(_as_tensors, uint8=uint8, augment=augment, null_label=null_label)
    ds = wds.WebDataset(
        urls,
        resampled=order.resampled,
        shardshuffle=False if order.resampled or not order.shuffle else order.shardshuffle,
        nodesplitter=wds.split_by_node,
        workersplitter=wds.split_by_worker,
        empty_check=False,
        seed=seed,
    )
    ds = ds.select(chosen)
    if order.shuffle:
        ds = ds.shuffle(order.shuffle, seed=seed) if seed is not None else ds.shuffle(order.shuffle)
    # "l": 8-bit grayscale PNG → float numpy array in [0, 1] (a png member needs a handler).
    if not uint8:
        ds = ds.decode("l", only=["png"])
    ds = ds.map(to_tensors)
    if order.epoch_size is not None:
        ds = ds.with_epoch(order.epoch_size)
    elif order.resampled:
        raise UsageError("resampled=True streams for ever: pass epoch_size")
    return ds


def iter_manifest_samples(
    shard_dir: str | Path,
    *,
    split: str | None = None,
    as_tensor: bool = True,
    null_label: float = math.nan,
    shards: Collection[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Every sample once, in manifest order, not shuffled: for embedding all exams.

    Yields the manifest row's fields plus "image" ([1,S,S] float tensor, or an (S,S) float32
    numpy array with `as_tensor=False`) and "labels". `shards` (names as in the manifest's
    `shard` column) reads only those shards, still in manifest order: one task's share when
    embedding is split over a task runner.
    """
    import numpy as np

    from .normalise import decode_png

    manifest = pq.read_table(Path(shard_dir) / MANIFEST_FILE).to_pylist()
    wanted = None if shards is None else set(shards)
    sizes = Counter(r["shard"] for r in manifest)
    if wanted is not None and wanted - sizes.keys():
        raise UsageError(f"{MANIFEST_FILE} in {shard_dir} does not list {sorted(wanted - sizes.keys())[:3]}")
    position = 0
    for shard in dict.fromkeys(r["shard"] for r in manifest):
        if wanted is not None and shard not in wanted:
            position += sizes[shard]  # a shard's rows are contiguous in the manifest (checked when read)
            continue
        for sample in iter_tar_samples(Path(shard_dir) / shard):
            row = manifest[position] if position < len(manifest) else {"sample_key": None, "shard": None}
            if row["sample_key"] != sample["__key__"] or row["shard"] != shard:
                raise UsageError(f"{shard} does not match {MANIFEST_FILE} at row {position}: rerun 'radsim shard'")
            position += 1
            if split is not None and row["split"] != split:
                continue
            meta = json.loads(sample["json"])
            image: Any = decode_png(sample["png"]).astype(np.float32) / 255.0
            labels: Any = np.asarray(_label_values(meta["labels"], null_label), dtype=np.float32)
            if as_tensor:
                import torch

                image, labels = torch.from_numpy(image).unsqueeze(0), torch.from_numpy(labels)
            yield {**row, "image": image, "labels": labels}
        if position < len(manifest) and manifest[position]["shard"] == shard:  # the tar ended early
            raise UsageError(f"{shard} does not match {MANIFEST_FILE} (sample count): rerun 'radsim shard'")
    if position != len(manifest):
        raise UsageError(f"{MANIFEST_FILE} lists {len(manifest)} samples but the shards hold {position}")
