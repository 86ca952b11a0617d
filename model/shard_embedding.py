"""Embed the images of a shard folder in manifest order, in one process or as tasks on a runner.

Every image is embedded, labelled or not: a new exam may arrive before its report, and its
row is published with null findings. A batch never spans two shards, so a split run gives the
same vectors as a one-process run.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from radsim.data_contracts import RadsimError
from radsim.data_contracts.ids import META_KEY_ID
from radsim.data_contracts.inflight import in_order
from radsim.data_contracts.progress import progress_bar
from radsim.data_contracts.settings import check_value
from radsim.imaging.manifest import manifest_metadata
from radsim.warehouse.layout import MANIFEST_FILE

from .checkpoint import LoadedModel
from .compatibility import check_compatible
from .data import float_images_at
from .embed import embed_images
from .embed_config import DEFAULT_BATCH_SIZE, EmbedConfig
from .embedded import EmbeddedPart, EmbeddedShards, shard_digests, shard_row_counts
from .reuse import ReusePlan, embed_reusing
from .train_core import resolve_device

PartSubmitter = Callable[[list[str]], Any]
"""Shard names → a future whose `.result()` is `embed_part`'s EmbeddedPart for them (a Prefect task, say)."""


def shard_groups(shard_dir: str | Path, shards_per_task: int, only: Sequence[str] | None = None) -> list[list[str]]:
    """The manifest's shard names in write order (those in `only`, when given), cut into groups of
    `shards_per_task` (one task each)."""
    check_value(EmbedConfig, "shards_per_task", shards_per_task, "embedding")
    names = list(dict.fromkeys(pq.read_table(Path(shard_dir) / MANIFEST_FILE, columns=["shard"])
                               .column("shard").to_pylist()))
    if only is not None:
        wanted = set(only)
        names = [n for n in names if n in wanted]
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

    check_value(EmbedConfig, "batch_size", batch_size, "embedding")
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
    """Submit shard groups, `window` more while the oldest is awaited; yield their parts in manifest order."""
    for names, part in in_order(groups, submit, window + 1):  # the awaited one + `window` submitted behind it
        yield _checked(part, names)


def _checked(part: EmbeddedPart, names: list[str]) -> EmbeddedPart:
    if list(part.shards) != list(names):
        raise RadsimError(f"an embedding task returned shards {part.shards[:2]} for {names[:2]}")
    return part


def embed_shards(loaded: LoadedModel, shard_dir: str | Path, *, batch_size: int = DEFAULT_BATCH_SIZE,
                 device: str = "auto", progress: bool = False, shards_per_task: int = 1,
                 submit: PartSubmitter | None = None, window: int = 2, only: Sequence[str] | None = None,
                 reuse: ReusePlan | None = None) -> EmbeddedShards:
    """Embed every sample of `shard_dir` in manifest order (GPU when present, bf16 autocast there).

    With `submit`, groups of `shards_per_task` shards are handed to the caller's executor (a
    Prefect task runner on Dask, say), at most `window` groups in flight, and the parts are
    assembled here in manifest order. Each part must come from the model `loaded` was read from
    (its model_version is checked); on the same device the vectors equal a one-process run's.
    `only` embeds just those shards (the rows are theirs alone); `reuse` (see `plan_reuse`)
    embeds the plan's shards and takes the others' rows from the published version, so the
    result covers every shard as a full run would.

    Wide on purpose: its keywords are the three ways to run it (one process; mapped on an executor with
    `submit`, `shards_per_task`, `window`; reusing a version with `reuse`) plus the device and batch of
    radsim.model.embed_config.EmbedConfig; each combination is tested.
    """
    check_value(EmbedConfig, "batch_size", batch_size, "embedding")
    if reuse is not None:
        def embed(shards: list[str] | None) -> tuple[LoadedModel, EmbeddedShards]:
            return loaded, embed_shards(loaded, shard_dir, batch_size=batch_size, device=device, progress=progress,
                                        shards_per_task=shards_per_task, submit=submit, window=window,
                                        only=only if shards is None else shards)

        return embed_reusing(reuse, shard_dir, embed, loaded)[1]
    meta = manifest_metadata(shard_dir)
    check_compatible(loaded, meta, shard_dir)
    manifest = pq.read_table(Path(shard_dir) / MANIFEST_FILE, columns=["shard", "sample_key", "image_sha256"])
    if only is not None:
        manifest = manifest.filter(pc.is_in(manifest.column("shard"), value_set=pa.array(list(only), pa.string())))
    digests, counts = shard_digests(manifest), shard_row_counts(manifest)
    t0 = time.perf_counter()
    with _progress_bar(manifest.num_rows, progress) as bar:
        if submit is None:
            parts = ([embed_part(loaded, shard_dir, only, batch_size=batch_size, device=device, on_batch=bar.update)]
                     if only is None or digests else [])
        else:
            parts = []
            groups = shard_groups(shard_dir, shards_per_task, only)
            for part in _in_order(groups, submit, max(1, window)):
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
                          meta[META_KEY_ID], vocab, seconds, shard_digests=digests, shard_rows=counts)


def _progress_bar(total: int, enabled: bool) -> Any:
    return progress_bar(total, enabled, unit="image", desc="embed")
