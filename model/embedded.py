"""Embedded rows and what identifies the shards they came from (manifest order throughout).

Shared by the embedding of shards (radsim.model.shard_embedding), the reuse of published rows
(radsim.model.reuse) and publication (radsim.model.publish).
"""
from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa


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
    shard_digests: dict[str, str] = field(default_factory=dict)  # the shards these rows cover (shard_digests())
    shard_rows: dict[str, int] = field(default_factory=dict)  # and their row counts, in the same order
    reused_rows: int = 0  # rows taken from the published version instead of embedded
    reused_shards: int = 0

    @property
    def images_per_s(self) -> float:
        """Images actually embedded per second (reused rows cost no embedding)."""
        embedded = self.rows - self.reused_rows
        return embedded / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class EmbeddedPart(EmbeddedRows):
    """One task's share: the rows of a group of shards, and which shards and model made them."""

    shards: list[str]
    model_version: str


def shard_digests(manifest: pa.Table) -> dict[str, str]:
    """Per shard, a sha256 of its samples' keys and stored-image hashes in manifest order.

    The publish record keeps these, so a shard that differs from the one whose rows were
    published (write_shards never rewrites one, but a folder can be replaced by hand) is
    embedded again instead of being reused.
    """
    hashes: dict[str, Any] = {}
    for shard, key, img in zip(manifest.column("shard").to_pylist(), manifest.column("sample_key").to_pylist(),
                               manifest.column("image_sha256").to_pylist()):
        h = hashes.get(shard)
        if h is None:
            h = hashes[shard] = hashlib.sha256()
        h.update(f"{key}\t{img}\n".encode())
    return {shard: h.hexdigest() for shard, h in hashes.items()}


def shard_row_counts(manifest: pa.Table) -> dict[str, int]:
    """Per shard, its number of manifest rows, in manifest order."""
    return dict(Counter(manifest.column("shard").to_pylist()))


def compacted_shards(manifest: pa.Table, candidates: Sequence[str], record_digests: dict[str, str],
                     record_rows: dict[str, int]) -> set[str]:
    """Shards the record does not name whose rows are, in order, whole shards it does (a compaction).

    A compaction (radsim.imaging.compaction) rewrites the last small shards into one under a new
    name, rows and order unchanged. The record keeps each published shard's digest and row count in
    manifest order, so the merged shard's rows can be cut into the old shards' runs and each run
    checked against its digest: a match means every row is one the version already published.
    """
    present = set(manifest.column("shard").to_pylist())
    gone = [s for s in record_digests if s not in present and s in record_rows]
    lines: dict[str, list[str]] = {}
    for shard, key, img in zip(manifest.column("shard").to_pylist(), manifest.column("sample_key").to_pylist(),
                               manifest.column("image_sha256").to_pylist()):
        if shard in candidates:
            lines.setdefault(shard, []).append(f"{key}\t{img}\n")
    matched: set[str] = set()
    pointer = 0
    for name in candidates:
        rows, i, j = lines.get(name, []), 0, pointer
        while i < len(rows) and j < len(gone):
            count = int(record_rows[gone[j]])
            if hashlib.sha256("".join(rows[i:i + count]).encode()).hexdigest() != record_digests[gone[j]]:
                break
            i, j = i + count, j + 1
        if rows and i == len(rows):
            matched.add(name)
            pointer = j
    return matched


def in_manifest_order(names: Sequence[str], *parts: dict[str, Any]) -> dict[str, Any]:
    """The shards' entries in manifest order (what compacted_shards relies on)."""
    merged = {k: v for part in parts for k, v in part.items()}
    return {n: merged[n] for n in names if n in merged}
