"""Exams + labels → pseudonymised WebDataset shards, incrementally and crash-safely (DESIGN §7, §12).

The run is split in three plain steps so the Prefect flow can put its own task runner in
the middle:

1. `plan_shard_run`: validate inputs, quarantine duplicates, key ids, fix sticky splits,
   clean up what a crashed run left behind, and list the decode work.
2. `decode_batch` (worker.py) over `plan.batches()`: pure, parallel, order-preserving.
3. `commit_shard_run`: stream the results into new shards; after each shard is renamed
   into place its rows are appended to manifest.parquet (atomic rewrite). A shard on disk
   that the manifest does not list is an orphan of a crash and is removed by the next plan.

What reaches a shard: the PNG, and a JSON with the label vector, labelled flag, view
position and split. No header value, no path, no raw id.
"""
from __future__ import annotations

from datetime import datetime

import contextlib
import hashlib
import hmac
import json
import re
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from radsim.data_contracts.atomic import exclusive_lock
from radsim.data_contracts.inflight import in_order
from radsim.data_contracts.ingest import split_duplicates as _split_duplicates
from radsim.data_contracts import (
    IdKeyer,
    QuarantineRecord,
    StageCounts,
    UsageError,
    Vocabulary,
    check_vocabulary,
    default_vocabulary,
    load_contract,
    merge_quarantine,
    quarantine_table,
    reason_counts,
    read_input_table,
    rows_to_table,
    write_parquet_atomic,
)
from radsim.data_contracts.errors import UnexpectedStageError

from .compaction import DEFAULT_COMPACT_AFTER, CompactionResult, compact_tail
from .config import ShardOptions, shard_options
from .decode import normalise_view
from .splits import SPLITS_FILE, assign_splits, read_splits, write_splits
from .tarshard import ShardTarWriter
from .worker import DecodeOptions, DecodeResult, WorkItem, decode_batch

STAGE = "shard"
MANIFEST_FILE = "manifest.parquet"
QUARANTINE_FILE = "shard-quarantine.parquet"  # restricted: it names raw exam ids and source files
LEGACY_QUARANTINE_FILE = "quarantine.parquet"  # where releases before 2026-12 wrote it, inside SHARDS_DIR
SOURCES_FILE = "sources.parquet"  # sample_key → keyed digest of the source file (fast skip)
LOCK_FILE = ".radsim-shard.lock"
SHARD_NAME = "shard-{:06d}.tar"
SHARD_RE = re.compile(r"^shard-(\d{6,})\.tar$")
DEFAULT_MAXCOUNT = ShardOptions.model_fields["maxcount"].default
DEFAULT_MAXSIZE = ShardOptions.model_fields["maxsize"].default
DEFAULT_BATCH = ShardOptions.model_fields["batch_size"].default

META_KEY_ID = "radsim.key_id"
META_IMAGE_SIZE = "radsim.image_size"


@dataclass(frozen=True)
class PlannedRow:
    """One exam image to shard. exam_id/uri are restricted: used for quarantine only."""

    exam_id: str
    image_index: int
    uri: str
    exam_key: str
    patient_key: str
    sample_key: str
    split: str
    labels: tuple[int | None, ...] | None  # None: the exam has no labels row (unlabelled)
    view_hint: str | None


def default_quarantine_path(out_dir: str | Path) -> Path:
    """`<SHARDS_DIR>/../restricted/shard-quarantine.parquet`: the warehouse's restricted folder.

    The shard folder is pseudonymised and may be copied to a GPU cluster or a bucket as it is; its
    quarantine quotes raw exam ids and source paths, so it never lives there (DESIGN §3).
    """
    return Path(out_dir).parent / "restricted" / QUARANTINE_FILE


def _move_legacy_quarantine(out: Path, target: Path) -> None:
    """A quarantine left inside SHARDS_DIR by an earlier release moves to the restricted path."""
    legacy = out / LEGACY_QUARANTINE_FILE
    if not legacy.exists():
        return
    old = pq.read_table(target) if target.exists() else None
    write_parquet_atomic(merge_quarantine(old, pq.read_table(legacy)), target, load_contract("quarantine"))
    legacy.unlink()


@dataclass
class ShardPlan:
    out_dir: Path
    rows: list[PlannedRow]
    options: DecodeOptions
    counts: StageCounts
    quarantine: list[QuarantineRecord]
    manifest: pa.Table
    sources: dict[str, str]
    metadata: dict[str, str]
    vocabulary: Vocabulary
    maxcount: int = DEFAULT_MAXCOUNT
    maxsize: int = DEFAULT_MAXSIZE
    batch_size: int = DEFAULT_BATCH
    next_shard: int = 0
    removed_orphans: list[str] = field(default_factory=list)
    quarantine_path: Path | None = None
    compact_after: int = DEFAULT_COMPACT_AFTER

    def work_items(self) -> list[WorkItem]:
        # A recorded source digest only counts for samples the manifest still lists.
        listed = set(self.manifest.column("sample_key").to_pylist())
        return [WorkItem(i, r.uri, self.sources.get(r.sample_key) if r.sample_key in listed else None)
                for i, r in enumerate(self.rows)]

    def batches(self) -> list[list[WorkItem]]:
        items = self.work_items()
        return [items[i:i + self.batch_size] for i in range(0, len(items), self.batch_size)]


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


# --------------------------------------------------------------------------- small helpers


@contextlib.contextmanager
def shard_dir_lock(out_dir: str | Path) -> Iterator[None]:
    """One writer per shard folder: a second concurrent run fails fast instead of interleaving."""
    out = Path(out_dir)
    with exclusive_lock(out / LOCK_FILE, f"another 'radsim shard' run is writing to {out}"):
        yield


def resolve_uri(uri: str, base_dir: str | Path | None) -> str:
    """Relative image paths are relative to the exams manifest's folder."""
    if "://" in uri:
        return uri
    p = Path(uri).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    return str(p)


def sample_key(exam_key: str, image_index: int) -> str:
    return f"{exam_key}_{int(image_index)}"


def label_json(labels: Sequence[int | None] | None, n_findings: int, split: str, view_position: str) -> bytes:
    """The only metadata a sample carries (DESIGN §3): labels, labelled flag, view, split."""
    doc = {
        "labelled": labels is not None,
        "labels": list(labels) if labels is not None else [None] * n_findings,
        "split": split,
        "view_position": view_position,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _meta(table: pa.Table) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}


def read_manifest(out_dir: str | Path) -> pa.Table | None:
    path = Path(out_dir) / MANIFEST_FILE
    return pq.read_table(path) if path.exists() else None


def _load_manifest(out_dir: Path, contract: Any, metadata: dict[str, str], vocabulary: Vocabulary) -> pa.Table:
    existing = read_manifest(out_dir)
    if existing is None:
        return contract.validate(contract.empty(), metadata)
    meta = _meta(existing)
    if meta.get(META_KEY_ID) != metadata[META_KEY_ID]:
        raise UsageError(f"{out_dir / MANIFEST_FILE} was made under another pseudonymisation key "
                         f"(key_id {meta.get(META_KEY_ID)}, this run uses {metadata[META_KEY_ID]}); use a new folder")
    if meta.get(META_IMAGE_SIZE) != metadata[META_IMAGE_SIZE]:
        raise UsageError(f"shards in {out_dir} are {meta.get(META_IMAGE_SIZE)} px; rerun with "
                         f"--image-size {meta.get(META_IMAGE_SIZE)} or use a new folder")
    check_vocabulary(existing, vocabulary, "shard_manifest")
    return contract.validate(existing, metadata)


def _remove_orphans(out_dir: Path, listed: set[str]) -> list[str]:
    """Shards not in the manifest come from a crash between rename and manifest append."""
    removed: list[str] = []
    for p in sorted(out_dir.iterdir()):
        if p.name.startswith(".shard-") and p.name.endswith(".tar.tmp"):
            p.unlink()
        elif SHARD_RE.match(p.name) and p.name not in listed:
            p.unlink()
            removed.append(p.name)
    return removed


def _read_sources(out_dir: Path, key_id: str) -> dict[str, str]:
    path = out_dir / SOURCES_FILE
    if not path.exists():
        return {}
    table = pq.read_table(path)
    if _meta(table).get(META_KEY_ID) != key_id:
        return {}
    return dict(zip(table.column("sample_key").to_pylist(), table.column("source_digest").to_pylist()))


def _write_sources(out_dir: Path, sources: dict[str, str], key_id: str) -> None:
    table = pa.table({"sample_key": pa.array(list(sources), pa.string()), "source_digest": pa.array(list(sources.values()), pa.string())})
    write_parquet_atomic(table.replace_schema_metadata({META_KEY_ID: key_id}), out_dir / SOURCES_FILE)


def _as_table(value: pa.Table | str | Path) -> tuple[pa.Table, Path | None]:
    if isinstance(value, pa.Table):
        return value, None
    path = Path(value)
    return read_input_table(path), path.resolve().parent


# --------------------------------------------------------------------------- input checks


def split_duplicates(exams: pa.Table) -> tuple[pa.Table, list[QuarantineRecord]]:
    """Duplicate (exam_id, image_index) rows, and exam ids reused across patients, as `duplicate_id`."""
    return _split_duplicates(exams, STAGE)


def label_vectors(labels: pa.Table | None, vocabulary: Vocabulary) -> dict[str, tuple[int | None, ...]]:
    """exam_id → label values in vocabulary order, from any labels-contract table."""
    if labels is None:
        return {}
    check_vocabulary(labels, vocabulary, "labels")
    table = load_contract("labels", vocabulary).validate(labels)
    cols = [table.column(name).to_pylist() for name in vocabulary.names]
    return {eid: tuple(col[i] for col in cols) for i, eid in enumerate(table.column("exam_id").to_pylist())}


# --------------------------------------------------------------------------- step 1: plan


def plan_shard_run(
    exams: pa.Table | str | Path,
    labels: pa.Table | str | Path | None,
    out_dir: str | Path,
    *,
    keyer: IdKeyer,
    vocabulary: Vocabulary | None = None,
    base_dir: str | Path | None = None,
    quarantine_path: str | Path | None = None,
    options: ShardOptions | None = None,
    **settings: Any,
) -> ShardPlan:
    """Validate, key, split and list the decode work; cleans up after a crashed run.

    `options` (or ShardOptions' defaults) with any ShardOptions field given as a keyword
    (`image_size=64`) set the sizes, fractions and limits. Refused records go to
    `quarantine_path` (default: `default_quarantine_path(out_dir)`).
    """
    opts = shard_options(options, **settings)
    image_size, fractions = opts.image_size, opts.split_fractions
    vocabulary = vocabulary or default_vocabulary()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    qpath = Path(quarantine_path) if quarantine_path is not None else default_quarantine_path(out)
    _move_legacy_quarantine(out, qpath)

    exams_table, exams_dir = _as_table(exams)
    base = Path(base_dir) if base_dir is not None else exams_dir
    rows_in = exams_table.num_rows
    kept, quarantine = split_duplicates(exams_table)
    kept = load_contract("exams").validate(kept)
    if labels is not None:
        labels, _ = _as_table(labels)
    vectors = label_vectors(labels, vocabulary)

    metadata = {META_KEY_ID: keyer.key_id, META_IMAGE_SIZE: str(image_size), **vocabulary.metadata()}
    contract = load_contract("shard_manifest", vocabulary)
    manifest = _load_manifest(out, contract, metadata, vocabulary)
    removed = _remove_orphans(out, set(manifest.column("shard").to_pylist()))
    numbers = [int(SHARD_RE.match(s).group(1)) for s in set(manifest.column("shard").to_pylist())]  # type: ignore[union-attr]

    records = kept.select(["exam_id", "patient_id", "image_uri", "image_index", "view_position"]).to_pylist()
    patient_keys = [keyer.patient_key(r["patient_id"]) for r in records]
    splits_path = out / SPLITS_FILE
    splits, new = assign_splits(read_splits(splits_path, keyer.key_id), patient_keys, fractions)
    if new:
        write_splits(splits_path, splits, keyer.key_id)

    rows: list[PlannedRow] = []
    for r, pk in zip(records, patient_keys):
        ek = keyer.exam_key(r["exam_id"])
        rows.append(PlannedRow(
            exam_id=r["exam_id"], image_index=int(r["image_index"]), uri=resolve_uri(r["image_uri"], base),
            exam_key=ek, patient_key=pk, sample_key=sample_key(ek, r["image_index"]), split=splits[pk],
            labels=vectors.get(r["exam_id"]), view_hint=r["view_position"],
        ))
    digest_key = hmac.new(keyer.secret, b"radsim-source-digest", hashlib.sha256).digest()
    return ShardPlan(
        out_dir=out, rows=rows, options=DecodeOptions(image_size, opts.max_pixels, digest_key),
        counts=StageCounts(STAGE, rows_in=rows_in, quarantined=len(quarantine)),
        quarantine=quarantine, manifest=manifest, sources=_read_sources(out, keyer.key_id),
        metadata=metadata, vocabulary=vocabulary, maxcount=opts.maxcount, maxsize=opts.maxsize,
        batch_size=opts.batch_size, next_shard=max(numbers, default=-1) + 1, removed_orphans=removed,
        quarantine_path=qpath, compact_after=opts.compact_after,
    )


# --------------------------------------------------------------------------- step 2: decode


def _pool_context() -> Any:
    from radsim.data_contracts.processes import worker_context

    return worker_context(["radsim.imaging.worker"])  # workers start with the decoders imported


def ordered_map(fn: Callable[..., list[DecodeResult]], batches: Iterable[list[WorkItem]], opts: DecodeOptions,
                workers: int = 1, window: int | None = None) -> Iterator[DecodeResult]:
    """Results in input order, with at most `window` batches in flight (bounded memory)."""
    if workers <= 1:
        for batch in batches:
            yield from fn(batch, opts)
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context()) as pool:
        for _, results in in_order(batches, lambda batch: pool.submit(fn, batch, opts), window or 2 * workers,
                                   cancel_pending=True):
            yield from results


def decode_plan(plan: ShardPlan, workers: int = 1) -> Iterator[DecodeResult]:
    return ordered_map(decode_batch, plan.batches(), plan.options, workers)


# --------------------------------------------------------------------------- step 3: commit


def _progress(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc="shard", file=sys.stderr, disable=not enabled or not sys.stderr.isatty())


def _append_manifest(plan: ShardPlan, rows: list[dict[str, Any]]) -> None:
    """Add a committed shard's rows: the manifest is rewritten atomically (temp + rename)."""
    contract = load_contract("shard_manifest", plan.vocabulary)
    plan.manifest = pa.concat_tables([plan.manifest, contract.validate(rows_to_table(contract, rows), plan.metadata)])
    write_parquet_atomic(plan.manifest, plan.out_dir / MANIFEST_FILE, contract, plan.metadata)


def commit_shard_run(plan: ShardPlan, results: Iterable[DecodeResult], *, progress: bool = True) -> ShardRunSummary:
    """Stream decode results into new shards; every committed shard is in the manifest."""
    counts, out, n_findings = plan.counts, plan.out_dir, len(plan.vocabulary)
    stored = dict(zip(plan.manifest.column("sample_key").to_pylist(), plan.manifest.column("image_sha256").to_pylist()))
    written: list[str] = []
    source_updates: dict[str, str] = {}
    writer: ShardTarWriter | None = None
    pending: list[dict[str, Any]] = []

    def flush() -> None:
        nonlocal writer, pending
        if writer is None:
            return
        path = writer.commit()
        writer = None
        _append_manifest(plan, pending)
        if source_updates:
            plan.sources.update(source_updates)
            source_updates.clear()
            _write_sources(out, plan.sources, plan.metadata[META_KEY_ID])
        written.append(path.name)
        pending = []
        plan.next_shard += 1

    bar = _progress(len(plan.rows), progress)
    try:
        for res in results:
            bar.update(1)
            row = plan.rows[res.position]
            if res.status == "unchanged":
                counts.skipped += 1
                continue
            if res.status == "failed":
                raise UnexpectedStageError(
                    f"decoding sample {row.sample_key} failed unexpectedly ({res.message}); this is not bad input "
                    "but a bug or a broken install (codecs, pydicom), so nothing was quarantined. Shards committed "
                    "before it are kept; fix the cause and rerun")
            if res.status == "rejected":
                plan.quarantine.append(QuarantineRecord(STAGE, f"{row.exam_id}/{row.image_index}", res.reason_code or "unreadable_image",
                                                        res.message or "", row.uri))
                counts.quarantined += 1
                continue
            assert res.png is not None and res.image_sha256 is not None and res.source_digest is not None
            if row.sample_key in stored:
                if stored[row.sample_key] == res.image_sha256:
                    counts.skipped += 1
                    if plan.sources.get(row.sample_key) != res.source_digest:
                        source_updates[row.sample_key] = res.source_digest
                else:
                    plan.quarantine.append(QuarantineRecord(
                        STAGE, f"{row.exam_id}/{row.image_index}", "duplicate_id",
                        "exam image already sharded with different pixels; shards are never rewritten "
                        "(shard into a new folder to replace it)", row.uri))
                    counts.quarantined += 1
                continue
            hinted = normalise_view(row.view_hint)
            view = hinted if hinted != "UNKNOWN" else (res.view_position or "UNKNOWN")
            sample = {"__key__": row.sample_key, "png": res.png,
                      "json": label_json(row.labels, n_findings, row.split, view)}
            if writer is not None and (writer.count >= plan.maxcount or writer.projected_size(sample) > plan.maxsize):
                flush()
            if writer is None:
                writer = ShardTarWriter(out / SHARD_NAME.format(plan.next_shard))
            writer.write(sample)
            stored[row.sample_key] = res.image_sha256
            source_updates[row.sample_key] = res.source_digest
            pending.append({"exam_key": row.exam_key, "patient_key": row.patient_key, "image_index": row.image_index,
                            "shard": writer.final_path.name, "sample_key": row.sample_key, "split": row.split,
                            "view_position": view, "image_sha256": res.image_sha256, "labelled": row.labels is not None})
            counts.rows_out += 1
        flush()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        bar.close()
    if source_updates:  # digests learnt for samples that were skipped by pixel hash
        plan.sources.update(source_updates)
        _write_sources(out, plan.sources, plan.metadata[META_KEY_ID])
    compaction, plan.manifest = compact_tail(out, plan.manifest, vocabulary=plan.vocabulary, metadata=plan.metadata,
                                             compact_after=plan.compact_after, maxcount=plan.maxcount,
                                             maxsize=plan.maxsize, next_shard=plan.next_shard, shard_name=SHARD_NAME)
    plan.next_shard += len(compaction.written)
    qpath = plan.quarantine_path or default_quarantine_path(out)
    reasons = _write_quarantine(qpath, plan.quarantine)
    counts.check()
    return ShardRunSummary(counts, out, written, reasons, plan.manifest.num_rows, list(plan.removed_orphans), qpath,
                           compaction)


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


def shard_refusals(quarantine_path: str | Path, since: datetime) -> set[str]:
    """Exam ids the shard stage quarantined at or after `since` (record ids are `<exam_id>/<index>...`).

    The warehouse ledger uses this so that an exam whose new image was refused (a re-send with
    other pixels: shards are never rewritten) is not marked as sharded.
    """
    path = Path(quarantine_path)
    if not path.exists():
        return set()
    rows = pq.read_table(path, columns=["stage", "record_id", "seen_at"]).to_pylist()
    return {r["record_id"].split("/", 1)[0] for r in rows if r["stage"] == STAGE and r["seen_at"] >= since}


# --------------------------------------------------------------------------- all three


def write_shards(
    exams: pa.Table | str | Path,
    labels: pa.Table | str | Path | None,
    out_dir: str | Path,
    *,
    keyer: IdKeyer,
    vocabulary: Vocabulary | None = None,
    workers: int = 1,
    base_dir: str | Path | None = None,
    progress: bool = True,
    quarantine_path: str | Path | None = None,
    options: ShardOptions | None = None,
    **settings: Any,
) -> ShardRunSummary:
    """Shard exams (an exams-contract table or its path) with their labels into `out_dir`.

    `options` and ShardOptions fields as keywords as for `plan_shard_run`.
    """
    with shard_dir_lock(out_dir):
        plan = plan_shard_run(exams, labels, out_dir, keyer=keyer, vocabulary=vocabulary, base_dir=base_dir,
                              quarantine_path=quarantine_path, options=options, **settings)
        return commit_shard_run(plan, decode_plan(plan, workers), progress=progress)
