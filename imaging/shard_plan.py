"""Step 1 of a shard run: validate the inputs, key ids, fix sticky splits, clean up after a crash, list the work.

Also the plan's types and the small pure helpers both other steps share (sample keys, the
sample JSON, the folder lock). See radsim.imaging.shards for the whole run.
"""
from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from radsim.data_contracts import (
    IdKeyer,
    QuarantineRecord,
    StageCounts,
    Vocabulary,
    check_vocabulary,
    default_vocabulary,
    load_contract,
    merge_quarantine,
    read_input_table,
    write_parquet_atomic,
)
from radsim.data_contracts.atomic import exclusive_lock
from radsim.data_contracts.ingest import split_duplicates as _split_duplicates
from radsim.warehouse.layout import QUARANTINE_FILE as _QUARANTINE_FILE
from radsim.warehouse.layout import SHARD_QUARANTINE_FILE

from .config import DEFAULT_COMPACT_AFTER, ShardOptions, shard_options
from .manifest import META_IMAGE_SIZE, META_KEY_ID, SHARD_RE, load_manifest, read_sources, remove_orphans
from .splits import SPLITS_FILE, assign_splits, read_splits, write_splits
from .worker import DecodeOptions, WorkItem

STAGE = "shard"


QUARANTINE_FILE = SHARD_QUARANTINE_FILE  # restricted: it names raw exam ids and source files


LEGACY_QUARANTINE_FILE = _QUARANTINE_FILE  # where releases before 2026-12 wrote it, inside SHARDS_DIR


LOCK_FILE = ".radsim-shard.lock"


DEFAULT_MAXCOUNT = ShardOptions.model_fields["maxcount"].default


DEFAULT_MAXSIZE = ShardOptions.model_fields["maxsize"].default


DEFAULT_BATCH = ShardOptions.model_fields["batch_size"].default


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


def _as_table(value: pa.Table | str | Path) -> tuple[pa.Table, Path | None]:
    if isinstance(value, pa.Table):
        return value, None
    path = Path(value)
    return read_input_table(path), path.resolve().parent


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


@dataclass(frozen=True)
class ShardSite:
    """Where a shard run stands: each is rarely other than its default."""

    vocabulary: Vocabulary | None = None  # the labels' vocabulary (default: radsim's)
    base_dir: str | Path | None = None  # where relative image_uri start (default: the exams file's folder)
    quarantine_path: str | Path | None = None  # the refusals table (default: default_quarantine_path(out_dir))


DEFAULT_SITE = ShardSite()  # every default (frozen: safe to share)


def plan_shard_run(
    exams: pa.Table | str | Path,
    labels: pa.Table | str | Path | None,
    out_dir: str | Path,
    *,
    keyer: IdKeyer,
    site: ShardSite = DEFAULT_SITE,
    options: ShardOptions | None = None,
    **settings: Any,
) -> ShardPlan:
    """Validate, key, split and list the decode work; cleans up after a crashed run.

    `options` (or ShardOptions' defaults) with any ShardOptions field given as a keyword
    (`image_size=64`) set the sizes, fractions and limits. Refused records go to
    `site.quarantine_path` (default: `default_quarantine_path(out_dir)`).
    """
    opts = shard_options(options, **settings)
    image_size, fractions = opts.image_size, opts.split_fractions
    vocabulary = site.vocabulary or default_vocabulary()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    qpath = Path(site.quarantine_path) if site.quarantine_path is not None else default_quarantine_path(out)
    _move_legacy_quarantine(out, qpath)

    exams_table, exams_dir = _as_table(exams)
    base = Path(site.base_dir) if site.base_dir is not None else exams_dir
    rows_in = exams_table.num_rows
    kept, quarantine = split_duplicates(exams_table)
    kept = load_contract("exams").validate(kept)
    if labels is not None:
        labels, _ = _as_table(labels)
    vectors = label_vectors(labels, vocabulary)

    metadata = {META_KEY_ID: keyer.key_id, META_IMAGE_SIZE: str(image_size), **vocabulary.metadata()}
    contract = load_contract("shard_manifest", vocabulary)
    manifest = load_manifest(out, contract, metadata, vocabulary)
    removed = remove_orphans(out, set(manifest.column("shard").to_pylist()))
    numbers = [int(SHARD_RE.match(s).group(1)) for s in set(manifest.column("shard").to_pylist())]  # type: ignore[union-attr]

    rows = _planned_rows(kept, keyer, vectors, out / SPLITS_FILE, fractions, base)
    digest_key = hmac.new(keyer.secret, b"radsim-source-digest", hashlib.sha256).digest()
    return ShardPlan(
        out_dir=out, rows=rows, options=DecodeOptions(image_size, opts.max_pixels, digest_key, opts.reduced_decode),
        counts=StageCounts(STAGE, rows_in=rows_in, quarantined=len(quarantine)),
        quarantine=quarantine, manifest=manifest, sources=read_sources(out, keyer.key_id),
        metadata=metadata, vocabulary=vocabulary, maxcount=opts.maxcount, maxsize=opts.maxsize,
        batch_size=opts.batch_size, next_shard=max(numbers, default=-1) + 1, removed_orphans=removed,
        quarantine_path=qpath, compact_after=opts.compact_after,
    )


def _planned_rows(exams: pa.Table, keyer: IdKeyer, vectors: dict[str, tuple[int | None, ...]], splits_path: Path,
                  fractions: Sequence[float], base: Path | None) -> list[PlannedRow]:
    """One row per exam image: keys, sticky split (new patients recorded in splits.parquet), labels, path."""
    records = exams.select(["exam_id", "patient_id", "image_uri", "image_index", "view_position"]).to_pylist()
    patient_keys = [keyer.patient_key(r["patient_id"]) for r in records]
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
    return rows
