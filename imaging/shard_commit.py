"""Step 3 of a shard run: stream decode results into new shards, then list them in the manifest.

Each full shard is renamed into place, and its rows are appended to manifest.parquet (an atomic
rewrite of the whole table) once the shards waiting to be listed hold at least
`COMMIT_FRACTION` of the rows already listed, or `COMMIT_SECONDS` have passed since the last
listing, and always at the end of the run. A shard on disk that the manifest does not list is an
orphan of a crash, removed by the next plan and its images sharded again: a crash costs at most
that much work. Listing every shard at once would rewrite the manifest (and sources.parquet)
once per shard, quadratic in the archive: ~0.5 s per shard at 745,000 rows, longer than a shard
takes to decode once many workers feed one committer (issue 24). Small archives still list every
shard as it closes. Bad input becomes quarantine rows; a decoder failure that is not bad input
lists the complete shards, then stops the run.
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

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
from radsim.data_contracts.progress import progress_bar

from .compaction import CompactionResult, compact_tail
from .decode import normalise_view
from .manifest import MANIFEST_FILE, META_KEY_ID, SHARD_NAME, append_rows, write_sources
from .shard_plan import STAGE, PlannedRow, ShardPlan, default_quarantine_path, label_json
from .tarshard import ShardTarWriter
from .worker import DecodeResult


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
            lines.append(
                f"removed {len(self.removed_orphans)} shard(s) left by an interrupted run: "
                f"{', '.join(self.removed_orphans)}"
            )
        if self.compaction is not None and self.compaction.merged:
            lines.append(self.compaction.summary())
        lines.append(f"{self.samples_total} sample(s) in {self.out_dir / MANIFEST_FILE}")
        return "\n".join(lines)


def _progress(total: int, enabled: bool) -> Any:
    return progress_bar(total, enabled, unit="img", desc="shard", leave=True)


COMMIT_FRACTION = 0.1  # list waiting shards once they hold this share of the listed rows: O(archive) rewrites in all
COMMIT_SECONDS = 60.0  # ... or once this long has passed: what a crash can cost in redone decoding


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
            committer.list_shards()
        except UnexpectedStageError:
            committer.abort()
            committer.list_shards()  # not a crash: the complete shards are kept, as the error says
            raise
        except BaseException:
            committer.abort()
            raise
    committer.save_sources()  # digests learnt for samples that were skipped by pixel hash
    out = plan.out_dir
    compaction, plan.manifest = compact_tail(plan, SHARD_NAME)
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
        self.written: list[str] = []  # shards listed in the manifest by this run
        self.unlisted: list[str] = []  # renamed into place, rows not yet in the manifest
        self.source_updates: dict[str, str] = {}
        self.writer: ShardTarWriter | None = None
        self.open_rows: list[dict[str, Any]] = []  # rows of the shard being written
        self.pending: list[dict[str, Any]] = []  # rows of the closed, unlisted shards
        self.listed_at = time.monotonic()

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
        self.open_rows.append({"exam_key": row.exam_key, "patient_key": row.patient_key, "image_index": row.image_index,
                             "shard": self.writer.final_path.name, "sample_key": row.sample_key, "split": row.split,
                             "view_position": view, "image_sha256": res.image_sha256,
                             "labelled": row.labels is not None})
        plan.counts.rows_out += 1

    def flush(self) -> None:
        """Close the open shard (renamed into place); list the waiting shards when they are due."""
        if self.writer is None:
            return
        path = self.writer.commit()
        self.writer = None
        self.unlisted.append(path.name)
        self.pending += self.open_rows
        self.open_rows = []
        self.plan.next_shard += 1
        due = len(self.pending) >= COMMIT_FRACTION * self.plan.manifest.num_rows
        if due or time.monotonic() - self.listed_at >= COMMIT_SECONDS:
            self.list_shards()

    def list_shards(self) -> None:
        """Append the rows of every closed, unlisted shard to manifest.parquet; from then on they count."""
        if not self.unlisted:
            return
        _append_manifest(self.plan, self.pending)
        self.save_sources()
        self.written += self.unlisted
        self.unlisted, self.pending = [], []
        self.listed_at = time.monotonic()

    def save_sources(self) -> None:
        if self.source_updates:
            self.plan.sources.update(self.source_updates)
            self.source_updates.clear()
            write_sources(self.plan.out_dir, self.plan.sources, self.plan.metadata[META_KEY_ID])

    def abort(self) -> None:
        """Drop the open shard: its file and its rows (closed shards are kept, listed or not)."""
        if self.writer is not None:
            self.writer.abort()
            self.writer = None
        self.open_rows = []


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
