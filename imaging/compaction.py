"""Shard compaction: a tail of small shards is merged into full-sized ones (issue 15).

Every nightly increment writes its own shard, so a feed of 3 exams a night leaves hundreds of
tiny shards after a year; WebDataset readers want shards of 100 MB to 1 GB, and object stores
charge per request. Once the manifest's *tail* (its last shards, in manifest order) holds
`compact_after` small shards, they are rewritten into as few shards as the size limits allow.

A shard is small when it holds fewer than half of `maxcount` samples and is under half of
`maxsize` bytes. Only the tail is ever rewritten, so a compaction costs at most `compact_after`
small shards, whatever the archive holds.

Crash-safe like the rest of the shard stage, in three steps under the shard folder's lock:

1. the merged shards are written under new numbers (temporary name, fsync, rename);
2. the manifest is rewritten (temp + rename) with the tail's rows, in the same order, pointing at
   the merged shards: this rename is the commit;
3. the old tail shards are deleted.

A crash before step 2 leaves the merged shards unlisted, and one before step 3 leaves the old
ones unlisted; either way the next run removes the unlisted files as orphans, so the folder is
always the old layout or the new one. Samples are copied byte for byte and checked against the
manifest's image_sha256; `splits.parquet` and `sources.parquet` name samples, not shards, and do
not change. The manifest's row order does not change, so training, which reads it in that
order, gets the same data. A published version's rows are reused across a compaction (its
publish record knows each old shard's digest and row count), so nothing is re-embedded.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from radsim.data_contracts import load_contract, write_parquet_atomic
from radsim.data_contracts.errors import UnexpectedStageError

from .manifest import MANIFEST_FILE, SHARD_NAME
from .tarshard import ShardTarWriter, iter_tar_samples

if TYPE_CHECKING:  # pragma: no cover
    from .shard_plan import ShardPlan


@dataclass
class CompactionResult:
    merged: list[str] = field(default_factory=list)  # the small shards rewritten
    written: list[str] = field(default_factory=list)  # the shards they became
    samples: int = 0

    def summary(self) -> str:
        if not self.merged:
            return "compaction: nothing to merge"
        return (f"compaction: merged {len(self.merged)} small shards ({self.merged[0]}..{self.merged[-1]}, "
                f"{self.samples} samples) into {', '.join(self.written)}")


def small_tail(manifest: pa.Table, out_dir: Path, maxcount: int, maxsize: int) -> list[str]:
    """The last shards in manifest order that are each small (under half the count and size limits)."""
    shards = manifest.column("shard").to_pylist()
    counts = Counter(shards)
    tail: list[str] = []
    for name in reversed(list(dict.fromkeys(shards))):
        if counts[name] * 2 >= maxcount or (out_dir / name).stat().st_size * 2 >= maxsize:
            break
        tail.append(name)
    return tail[::-1]


def compact_tail(plan: ShardPlan, shard_name: str = SHARD_NAME) -> tuple[CompactionResult, pa.Table]:
    """Merge the plan's small tail when it holds `plan.compact_after` shards or more; the caller holds the lock.

    The plan gives the folder, the manifest on disk, its vocabulary and metadata, the size limits and
    the next shard number. Returns what was done and the manifest now on disk.
    """
    out, manifest, compact_after = plan.out_dir, plan.manifest, plan.compact_after
    maxcount, maxsize, next_shard = plan.maxcount, plan.maxsize, plan.next_shard
    result = CompactionResult()
    if compact_after < 2:
        return result, manifest
    tail = small_tail(manifest, out, maxcount, maxsize)
    if len(tail) < compact_after:
        return result, manifest
    in_tail = pc.is_in(manifest.column("shard"), value_set=pa.array(tail, pa.string()))
    rows = manifest.filter(in_tail)
    expected = dict(zip(rows.column("sample_key").to_pylist(), rows.column("image_sha256").to_pylist()))
    order = rows.column("sample_key").to_pylist()
    new_names: list[str] = []
    sample_shard: dict[str, str] = {}
    writer: ShardTarWriter | None = None
    try:
        for i, sample in enumerate(_samples(out, tail)):
            key = sample["__key__"]
            if i >= len(order) or key != order[i] or hashlib.sha256(sample["png"]).hexdigest() != expected[key]:
                raise UnexpectedStageError(f"shard {out} does not match its manifest at sample {key}: compaction "
                                           "stopped before changing anything; check the folder")
            if writer is not None and (writer.count >= maxcount or writer.projected_size(sample) > maxsize):
                writer.commit()
                writer = None
            if writer is None:
                writer = ShardTarWriter(out / shard_name.format(next_shard + len(new_names)))
                new_names.append(writer.final_path.name)
            writer.write(sample)
            sample_shard[key] = new_names[-1]
        if len(sample_shard) != len(order):
            raise UnexpectedStageError(f"the small shards of {out} hold {len(sample_shard)} samples but the manifest "
                                       f"lists {len(order)}: compaction stopped before changing anything")
        if writer is not None:
            writer.commit()
            writer = None
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    # step 2, the commit: the same rows in the same order, pointing at the merged shards
    shard_col = [sample_shard.get(k, s) for k, s in zip(manifest.column("sample_key").to_pylist(),
                                                         manifest.column("shard").to_pylist())]
    updated = manifest.set_column(manifest.schema.get_field_index("shard"), "shard", pa.array(shard_col, pa.string()))
    contract = load_contract("shard_manifest", plan.vocabulary)
    write_parquet_atomic(updated, out / MANIFEST_FILE, contract, plan.metadata)
    for name in tail:  # step 3
        (out / name).unlink(missing_ok=True)
    result.merged, result.written, result.samples = tail, new_names, rows.num_rows
    return result, contract.validate(updated, plan.metadata)


def _samples(out: Path, names: list[str]) -> Iterator[dict[str, bytes | str]]:
    for name in names:
        yield from iter_tar_samples(out / name)
