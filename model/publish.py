"""Embed every sharded image with a trained model and publish the table (DESIGN §4, §5, §12).

Every image is embedded, labelled or not: a new exam may arrive before its report, and
its row is published with null findings. The writing itself (staging, validation, the
atomic swap and the publish record) is radsim.evaluation.published, which imports no torch.
"""
from __future__ import annotations

import json
import math
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
from radsim.data_contracts import RadsimError, UsageError
from radsim.evaluation.published import (
    PublishResult,
    embeddings_table,
    publish_table,
    table_metadata_for,
)

from .checkpoint import LoadedModel, load_model
from .data import float_images_at
from .embed import embed_images
from .train_core import resolve_device

DEFAULT_BATCH_SIZE = 256


@dataclass
class EmbeddedRows:
    """Embedded images in manifest order: keys, splits, views, label values and vectors."""

    exam_keys: list[str]
    image_index: list[int]
    splits: list[str]
    view_positions: list[str | None]
    label_values: list[list[int | None] | None]
    embeddings: np.ndarray

    @property
    def rows(self) -> int:
        return len(self.exam_keys)


@dataclass
class EmbeddedShards(EmbeddedRows):
    """What publication needs: every sharded image's row, with the key id and vocabulary."""

    key_id: str
    vocabulary: dict[str, Any]
    seconds: float

    @property
    def images_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("nan")


def shard_metadata(shard_dir: str | Path) -> dict[str, str]:
    path = Path(shard_dir) / "manifest.parquet"
    if not path.exists():
        raise UsageError(f"no manifest.parquet in {shard_dir}: run 'radsim shard' first")
    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise UsageError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    return {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}


def check_compatible(loaded: LoadedModel, meta: dict[str, str], shard_dir: str | Path) -> None:
    """Refuse shards made under another key or vocabulary than the model's, or smaller than its input.

    Larger shards are resized to the model's size on the fly, as training does.
    """
    card = loaded.card
    key_id = meta.get("radsim.key_id")
    if key_id != card.key_id:
        raise UsageError(f"shards in {shard_dir} were keyed with key_id {key_id!r} but model {card.model_version} "
                         f"was trained under {card.key_id!r}: a different pseudonymisation key; use matching shards")
    findings = json.loads(meta.get("radsim.vocabulary.findings", "null") or "null")
    if findings != list(card.findings):
        raise UsageError(f"shards in {shard_dir} use another vocabulary ({len(findings or [])} findings) than model "
                         f"{card.model_version} ({len(card.findings)} findings)")
    size = meta.get("radsim.image_size")
    if size is None or int(size) < int(card.image_size):
        raise UsageError(f"shards in {shard_dir} hold {size}px images but model {card.model_version} expects "
                         f"{card.image_size}px: reshard with --image-size {card.image_size} or larger")


PartSubmitter = Callable[[list[str]], Any]
"""Shard names → a future whose `.result()` is `embed_part`'s EmbeddedPart for them (a Prefect task, say)."""


@dataclass
class EmbeddedPart(EmbeddedRows):
    """One task's share: the rows of a group of shards, and which shards and model made them."""

    shards: list[str]
    model_version: str


def shard_groups(shard_dir: str | Path, shards_per_task: int) -> list[list[str]]:
    """The manifest's shard names in write order, cut into groups of `shards_per_task` (one task each)."""
    if shards_per_task < 1:
        raise UsageError(f"--shards-per-task must be at least 1, got {shards_per_task}")
    names = list(dict.fromkeys(pq.read_table(Path(shard_dir) / "manifest.parquet", columns=["shard"])
                               .column("shard").to_pylist()))
    return [names[i:i + shards_per_task] for i in range(0, len(names), shards_per_task)]


def embed_part(loaded: LoadedModel, shard_dir: str | Path, shards: Sequence[str] | None = None, *,
               batch_size: int = DEFAULT_BATCH_SIZE, device: str = "auto",
               on_batch: Callable[[int], Any] | None = None) -> EmbeddedPart:
    """Embed the samples of `shards` (None: all) in manifest order.

    A batch never spans two shards, so every image is embedded in the same batch however the
    shards are grouped into tasks: a split run gives the same vectors as a one-process run.
    `on_batch(n)` is called after each batch (a progress bar).
    """
    from radsim.imaging.reader import iter_manifest_samples

    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    rows: dict[str, list[Any]] = {"exam_key": [], "image_index": [], "split": [], "view_position": [], "labels": []}
    seen: list[str] = []

    def batches() -> Iterator[torch.Tensor]:
        buf: list[torch.Tensor] = []
        for sample in iter_manifest_samples(shard_dir, as_tensor=True, shards=shards):
            if buf and sample["shard"] != seen[-1]:
                yield float_images_at(torch.stack(buf), loaded.card.image_size)
                buf = []
            if not seen or seen[-1] != sample["shard"]:
                seen.append(sample["shard"])
            rows["exam_key"].append(sample["exam_key"])
            rows["image_index"].append(int(sample["image_index"]))
            rows["split"].append(sample["split"])
            rows["view_position"].append(sample["view_position"])
            if sample["labelled"]:
                lab = sample["labels"].tolist()
                rows["labels"].append([None if math.isnan(v) else int(v) for v in lab])  # NaN = not mentioned
            else:
                rows["labels"].append(None)
            buf.append(sample["image"])
            if len(buf) == batch_size:
                yield float_images_at(torch.stack(buf), loaded.card.image_size)
                buf = []
        if buf:
            yield float_images_at(torch.stack(buf), loaded.card.image_size)

    def counted() -> Iterator[torch.Tensor]:
        for x in batches():
            yield x
            if on_batch is not None:
                on_batch(int(x.shape[0]))

    emb = embed_images(loaded.model, counted(), batch_size=batch_size, device=resolve_device(device))
    if emb.shape[0] == 0:
        emb = np.empty((0, loaded.card.embedding_dim), np.float32)
    return EmbeddedPart(rows["exam_key"], rows["image_index"], rows["split"], rows["view_position"], rows["labels"],
                        emb, shards=list(shards) if shards is not None else seen,
                        model_version=loaded.card.model_version)


def _in_order(groups: list[list[str]], submit: PartSubmitter, window: int) -> Iterator[EmbeddedPart]:
    """Submit shard groups with at most `window` in flight; yield their parts in manifest order."""
    pending: deque[tuple[list[str], Any]] = deque()
    for group in groups:
        pending.append((group, submit(group)))
        while len(pending) > window:
            names, future = pending.popleft()
            yield _checked(future.result(), names)
    while pending:
        names, future = pending.popleft()
        yield _checked(future.result(), names)


def _checked(part: EmbeddedPart, names: list[str]) -> EmbeddedPart:
    if list(part.shards) != list(names):
        raise RadsimError(f"an embedding task returned shards {part.shards[:2]} for {names[:2]}")
    return part


def embed_shards(loaded: LoadedModel, shard_dir: str | Path, *, batch_size: int = DEFAULT_BATCH_SIZE,
                 device: str = "auto", progress: bool = False, shards_per_task: int = 1,
                 submit: PartSubmitter | None = None, window: int = 2) -> EmbeddedShards:
    """Embed every sample of `shard_dir` in manifest order (GPU when present, bf16 autocast there).

    With `submit`, groups of `shards_per_task` shards are handed to the caller's executor (a
    Prefect task runner on Dask, say), at most `window` groups in flight, and the parts are
    assembled here in manifest order. Each part must come from the model `loaded` was read from
    (its model_version is checked); on the same device the vectors equal a one-process run's.
    """
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    meta = shard_metadata(shard_dir)
    check_compatible(loaded, meta, shard_dir)
    total = pq.read_metadata(Path(shard_dir) / "manifest.parquet").num_rows
    t0 = time.perf_counter()
    with _progress_bar(total, progress) as bar:
        if submit is None:
            parts = [embed_part(loaded, shard_dir, batch_size=batch_size, device=device, on_batch=bar.update)]
        else:
            parts = []
            for part in _in_order(shard_groups(shard_dir, shards_per_task), submit, max(1, window)):
                if part.model_version != loaded.card.model_version:
                    raise RadsimError(f"an embedding task used model {part.model_version}, not "
                                      f"{loaded.card.model_version}: workers must see the same model folder")
                parts.append(part)
                bar.update(part.rows)
    seconds = time.perf_counter() - t0
    dim = loaded.card.embedding_dim
    emb = np.concatenate([p.embeddings for p in parts if p.rows] or [np.empty((0, dim), np.float32)])
    vocab = {"name": meta.get("radsim.vocabulary.name", loaded.card.vocabulary_name),
             "version": meta.get("radsim.vocabulary.version", loaded.card.vocabulary_version),
             "findings": list(loaded.card.findings)}
    return EmbeddedShards([k for p in parts for k in p.exam_keys], [i for p in parts for i in p.image_index],
                          [s for p in parts for s in p.splits], [v for p in parts for v in p.view_positions],
                          [lv for p in parts for lv in p.label_values], emb.astype(np.float32, copy=False),
                          meta["radsim.key_id"], vocab, seconds)


def _progress_bar(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="image", desc="embed", file=sys.stderr, dynamic_ncols=True, leave=False,
                disable=not enabled or not sys.stderr.isatty())


def publish_embedded(embedded: EmbeddedShards, loaded: LoadedModel, published_dir: str | Path, **kw: Any) -> PublishResult:
    """Write `embedded` as the model's version of the embeddings table (atomic, with a publish record)."""
    card = loaded.card
    if embedded.embeddings.shape[1] != card.embedding_dim:
        raise UsageError(f"embeddings have D={embedded.embeddings.shape[1]}, model card says {card.embedding_dim}")
    table = embeddings_table(
        exam_keys=embedded.exam_keys, image_index=embedded.image_index, splits=embedded.splits,
        view_positions=embedded.view_positions, embeddings=embedded.embeddings, label_values=embedded.label_values,
        findings=embedded.vocabulary["findings"], model_version=card.model_version, key_id=embedded.key_id,
    )
    card_doc = json.loads(card.to_json())
    meta = table_metadata_for(model_version=card.model_version, key_id=embedded.key_id,
                              findings=embedded.vocabulary["findings"], vocabulary_name=str(embedded.vocabulary["name"]),
                              vocabulary_version=str(embedded.vocabulary["version"]), model_card=card_doc)
    splits = {s: embedded.splits.count(s) for s in sorted(set(embedded.splits))}
    extra = {
        "model": {"backbone": card.backbone, "loss": card.loss, "image_size": card.image_size,
                  "data_manifest_sha256": card.data_manifest_sha256, "created_at": card.created_at},
        "rows_by_split": splits,
        "rows_labelled": sum(v is not None for v in embedded.label_values),
        "embed_images_per_s": round(embedded.images_per_s, 1),
    }
    return publish_table(table, published_dir, model_version=card.model_version, embedding_dim=card.embedding_dim,
                         extra_metadata=meta, record_extra=extra, **kw)


def publish(model_dir: str | Path, shard_dir: str | Path, published_dir: str | Path, *,
            batch_size: int = DEFAULT_BATCH_SIZE, device: str = "auto", progress: bool = False) -> PublishResult:
    """`radsim publish`: load the model, embed every sharded image, publish atomically."""
    loaded = load_model(model_dir, device="cpu")
    embedded = embed_shards(loaded, shard_dir, batch_size=batch_size, device=device, progress=progress)
    return publish_embedded(embedded, loaded, published_dir)
