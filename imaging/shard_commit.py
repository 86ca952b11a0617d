"""Step 3 of a shard run: stream decode results into new shards, committed one by one.

After each shard is renamed into place its rows are appended to manifest.parquet (atomic
rewrite): a shard on disk that the manifest does not list is an orphan of a crash, removed by the
next plan. Bad input becomes quarantine rows; a decoder failure that is not bad input stops the run.
"""
from __future__ import annotations


from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pyarrow.parquet as pq

from radsim.data_contracts.progress import progress_bar
from radsim.data_contracts import (
    QuarantineRecord,
    StageCounts,
    load_contract,
    merge_quarantine,
    quarantine_table,
    reason_counts,
    write_parquet_atomic,
)
from radsim.data_contracts.errors import UnexpectedStageError

from .compaction import CompactionResult, compact_tail
from .decode import normalise_view
from .manifest import (META_IMAGE_SIZE, META_KEY_ID, MANIFEST_FILE, SHARD_NAME, SHARD_RE, SOURCES_FILE,  # noqa: F401
                       append_rows, load_manifest, read_manifest, read_sources, remove_orphans, write_sources)
from .tarshard import ShardTarWriter
from .worker import DecodeResult
from .shard_plan import STAGE, PlannedRow, ShardPlan, default_quarantine_path, label_json


@dataclass
class ShardRunSummary:
    counts: StageCounts
    out_dir: Path
    shards_written: list[str]
    quarantine_reasons: dict[str, int]
    samples_total: int
    removed_orphans: list[str] = field(default_factory=list)
    quarantine_path: Path | None = None
    compaction: CompactionResult | None = None

    @property
    def wrote_nothing(self) -> bool:
        return not self.shards_written

    def summary(self) -> str:
        lines = [self.counts.summary()]
        if self.shards_written:
            names = self.shards_written[0] + (f"..{self.shards_written[-1]}" if len(self.shards_written) > 1 else "")
            lines.append(f"wrote {self.counts.rows_out} sample(s) to {len(self.shards_written)} new shard(s): {names}")
        else:
            lines.append("nothing new to write: every exam is already sharded or quarantined")
        if self.quarantine_reasons:
            reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.quarantine_reasons.items()))
            lines.append(f"quarantined by reason: {reasons} (see {self.quarantine_path}, restricted)")
        if self.removed_orphans:
            lines.append(f"removed {len(self.removed_orphans)} shard(s) left by an interrupted run: {', '.join(self.removed_orphans)}")
        if self.compaction is not None and self.compaction.merged:
            lines.append(self.compaction.summary())
        lines.append(f"{self.samples_total} sample(s) in {self.out_dir / MANIFEST_FILE}")
        return "\n".join(lines)


def _progress(total: int, enabled: bool) -> Any:
    return progress_bar(total, enabled, unit="img", desc="shard", leave=True)


def _append_manifest(plan: ShardPlan, rows: list[dict[str, Any]]) -> None:
    """Add a committed shard's rows to the plan's manifest and to manifest.parquet."""
    plan.manifest = append_rows(plan.out_dir, plan.manifest, rows, plan.vocabulary, plan.metadata)


def commit_shard_run(plan: ShardPlan, results: Iterable[DecodeResult], *, progress: bool = True) -> ShardRunSummary:
    """Stream decode results into new shards; every committed shard is in the manifest."""
    committer = _Committer(plan)
    with _progress(len(plan.rows), progress) as bar:
        try:
            for res in results:
                bar.update(1)
                committer.take(res)
            committer.flush()
        except BaseException:
            committer.abort()
            raise
    committer.save_sources()  # digests learnt for samples that were skipped by pixel hash
    out = plan.out_dir
    compaction, plan.manifest = compact_tail(out, plan.manifest, vocabulary=plan.vocabulary, metadata=plan.metadata,
                                             compact_after=plan.compact_after, maxcount=plan.maxcount,
                                             maxsize=plan.maxsize, next_shard=plan.next_shard, shard_name=SHARD_NAME)
    plan.next_shard += len(compaction.written)
    qpath = plan.quarantine_path or default_quarantine_path(out)
    reasons = _write_quarantine(qpath, plan.quarantine)
    plan.counts.check()
    return ShardRunSummary(plan.counts, out, committer.written, reasons, plan.manifest.num_rows,
                           list(plan.removed_orphans), qpath, compaction)


class _Committer:
    """Writes accepted samples into shards in order; a shard counts once the manifest lists it."""

    def __init__(self, plan: ShardPlan):
        self.plan = plan
        self.stored = dict(zip(plan.manifest.column("sample_key").to_pylist(),
                               plan.manifest.column("image_sha256").to_pylist()))
        self.written: list[str] = []
        self.source_updates: dict[str, str] = {}
        self.writer: ShardTarWriter | None = None
        self.pending: list[dict[str, Any]] = []

    def take(self, res: DecodeResult) -> None:
        """One decode result: skipped, quarantined (bad input), written, or a loud failure (not bad input)."""
        plan, counts = self.plan, self.plan.counts
        row = plan.rows[res.position]
        if res.status == "unchanged":
            counts.skipped += 1
        elif res.status == "failed":
            raise UnexpectedStageError(
                f"decoding sample {row.sample_key} failed unexpectedly ({res.message}); this is not bad input "
                "but a bug or a broken install (codecs, pydicom), so nothing was quarantined. Shards committed "
                "before it are kept; fix the cause and rerun")
        elif res.status == "rejected":
            self._refuse(row, res.reason_code or "unreadable_image", res.message or "")
        elif row.sample_key in self.stored:
            self._seen_before(row, res)
        else:
            self._write(row, res)

    def _refuse(self, row: PlannedRow, reason: str, message: str) -> None:
        self.plan.quarantine.append(QuarantineRecord(STAGE, f"{row.exam_id}/{row.image_index}", reason, message,
                                                     row.uri))
        self.plan.counts.quarantined += 1

    def _seen_before(self, row: PlannedRow, res: DecodeResult) -> None:
        if self.stored[row.sample_key] != res.image_sha256:
            self._refuse(row, "duplicate_id", "exam image already sharded with different pixels; shards are never "
                         "rewritten (shard into a new folder to replace it)")
            return
        self.plan.counts.skipped += 1
        if self.plan.sources.get(row.sample_key) != res.source_digest:
            self.source_updates[row.sample_key] = res.source_digest

    def _write(self, row: PlannedRow, res: DecodeResult) -> None:
        plan = self.plan
        assert res.png is not None and res.image_sha256 is not None and res.source_digest is not None
        hinted = normalise_view(row.view_hint)
        view = hinted if hinted != "UNKNOWN" else (res.view_position or "UNKNOWN")
        sample = {"__key__": row.sample_key, "png": res.png,
                  "json": label_json(row.labels, len(plan.vocabulary), row.split, view)}
        if self.writer is not None and (self.writer.count >= plan.maxcount
                                        or self.writer.projected_size(sample) > plan.maxsize):
            self.flush()
        if self.writer is None:
            self.writer = ShardTarWriter(plan.out_dir / SHARD_NAME.format(plan.next_shard))
        self.writer.write(sample)
        self.stored[row.sample_key] = res.image_sha256
        self.source_updates[row.sample_key] = res.source_digest
        self.pending.append({"exam_key": row.exam_key, "patient_key": row.patient_key, "image_index": row.image_index,
                             "shard": self.writer.final_path.name, "sample_key": row.sample_key, "split": row.split,
                             "view_position": view, "image_sha256": res.image_sha256,
                             "labelled": row.labels is not None})
        plan.counts.rows_out += 1

    def flush(self) -> None:
        """Commit the open shard: rename it into place, then list its rows in the manifest."""
        if self.writer is None:
            return
        path = self.writer.commit()
        self.writer = None
        _append_manifest(self.plan, self.pending)
        self.save_sources()
        self.written.append(path.name)
        self.pending = []
        self.plan.next_shard += 1

    def save_sources(self) -> None:
        if self.source_updates:
            self.plan.sources.update(self.source_updates)
            self.source_updates.clear()
            write_sources(self.plan.out_dir, self.plan.sources, self.plan.metadata[META_KEY_ID])

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()


def _write_quarantine(path: Path, records: list[QuarantineRecord]) -> dict[str, int]:
    reasons = reason_counts(records)
    if not records:
        return reasons
    new = quarantine_table(records)
    old = pq.read_table(path) if path.exists() else None
    merged = merge_quarantine(old, new)
    if old is None or merged.num_rows != old.num_rows:  # rewrite only when something is new
        write_parquet_atomic(merged, path, load_contract("quarantine"))
    return reasons
