"""The warehouse ledger: what was seen, what changed, what each stage did (DESIGN §4, §11, §12).

The ledger, not Prefect's task cache, decides what a run does: Prefect's cache hashes paths
rather than contents and lives in PREFECT_HOME. One row per exam. It names raw exam ids and
inbox files, so it lives in `restricted/ledger.parquet` (DESIGN §3).

An exam is *new* when its id is not in the ledger, its *report changed* when the report hash
differs (re-label, re-publish), its *images changed* when the image hash differs (re-shard;
the shard stage refuses different pixels for a sample it already holds).

Change detection is by file stat first, as git's index and rsync do: the ledger keeps, per exam,
a digest of its files' (name, size, mtime_ns, inode, ctime_ns). A run hashes and parses only the
files of exams whose stat digest changed, or that are new, so a nightly run's cost grows with
what changed, not with the archive. A file whose stat changed but whose content did not (a
`touch`, a copy that keeps the bytes) is re-hashed once, found unchanged, and only its stat
digest is updated: nothing is relabelled or resharded. `verify=True` (`radsim run --verify`)
ignores the stat digests and re-hashes everything: after restoring an inbox from a backup that
does not keep mtimes, or to audit a file system that rewrites files in place with the same
timestamps.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from radsim.data_contracts import (
    IdKeyer,
    RadsimError,
    load_contract,
    write_parquet_atomic,
)
from radsim.data_contracts.atomic import sha256_file
from radsim.warehouse.layout import LEDGER_FILE, MANIFEST_FILE, RESTRICTED_DIR

LEGACY_LEDGER_FILE = LEDGER_FILE  # outside restricted/, where releases before 2026-12 kept it

STATUSES = ("pending", "done", "quarantined", "awaiting_report")  # data_contracts/ledger.yaml


def ledger_contract():
    return load_contract("ledger")


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def sha256_text(text: str | None) -> str | None:
    """Hash of a report; None when the exam has no report yet (it is sharded unlabelled)."""
    if text is None:
        return None
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def stat_digest(paths: Iterable[str | Path]) -> str | None:
    """Digest of the files' (name, size, mtime_ns, inode, ctime_ns): a stat call each, no file opened.

    None when a file is missing (the hash then says "missing" and the shard stage quarantines it).
    """
    h = hashlib.sha256()
    for p in sorted(str(p) for p in paths):
        try:
            st = os.stat(p)
        except OSError:
            return None
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\0{st.st_ctime_ns}\n".encode())
    return h.hexdigest()[:32]


@dataclass
class ExamFingerprint:
    exam_id: str
    report_sha256: str | None
    image_sha256: str
    has_report: bool  # False: no report yet; the exam is sharded unlabelled and labelled when it arrives
    files_stat: str | None = None  # stat digest of the exam's files when its hashes were taken
    rehashed: bool = True  # False: the image hash came from the ledger (stat unchanged)


def fingerprints(exams: pa.Table, files_stat: dict[str, str | None] | None = None,
                 ledger: pa.Table | None = None, verify: bool = False,
                 stat_covers_reports: bool = False) -> dict[str, ExamFingerprint]:
    """Per exam: the report hash and one hash over its image files in image_index order.

    The report hash comes from the text in hand. The image hash is taken from the ledger, without
    opening a file, when the exam's stat digest (`files_stat`, from the inbox scan) equals the
    ledger's; otherwise, or with `verify`, the files are hashed. A file that cannot be read hashes
    as "missing:<uri>", so the shard stage (which owns `missing_file`) quarantines it and a
    later, fixed copy counts as changed. With `stat_covers_reports` (a folder inbox, whose stat
    digest includes report.txt) an unchanged exam's report hash comes from the ledger too.
    """
    files_stat = files_stat if files_stat is not None else {}
    known = {} if ledger is None or verify else {
        r["exam_id"]: r for r in ledger.select(["exam_id", "report_sha256", "image_sha256", "files_stat"]).to_pylist()}
    by_exam: dict[str, list[tuple[int, str]]] = {}
    reports: dict[str, str | None] = {}
    cols = {c: exams.column(c).to_pylist() for c in ("exam_id", "image_index", "image_uri", "report_text")
            if c in exams.column_names}
    texts = cols.get("report_text") or [None] * exams.num_rows
    for eid, idx, uri, text in zip(cols["exam_id"], cols["image_index"], cols["image_uri"], texts):
        reports.setdefault(eid, text)
        old = known.get(eid)
        if old is not None and old["files_stat"] is not None and old["files_stat"] == files_stat.get(eid):
            by_exam[eid] = None  # type: ignore[assignment] - unchanged: the ledger's hash holds
            continue
        try:
            digest = sha256_file(uri) if "://" not in uri else f"uri:{uri}"
        except OSError:
            digest = f"missing:{uri}"
        by_exam.setdefault(eid, []).append((int(idx), digest))
    out = {}
    for eid, parts in by_exam.items():
        text = reports[eid]
        has = text is not None  # an empty report.txt is labelled (and quarantined as empty_report there)
        report = None if text is None or (parts is None and stat_covers_reports) else sha256_text(text)
        if parts is None:
            old = known[eid]
            if stat_covers_reports:
                report = old["report_sha256"]
            out[eid] = ExamFingerprint(eid, report, old["image_sha256"], has, files_stat.get(eid), rehashed=False)
            continue
        h = hashlib.sha256()
        for idx, digest in sorted(parts):
            h.update(f"{idx}:{digest}\n".encode())
        out[eid] = ExamFingerprint(eid, report, h.hexdigest(), has, files_stat.get(eid))
    return out


@dataclass
class LedgerDiff:
    """What this run has to do, decided by comparing the inbox against the ledger."""

    new: list[str] = field(default_factory=list)
    report_changed: list[str] = field(default_factory=list)
    images_changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def to_label(self) -> list[str]:
        return sorted(set(self.new) | set(self.report_changed))

    @property
    def to_shard(self) -> list[str]:
        return sorted(set(self.new) | set(self.images_changed))

    @property
    def nothing_new(self) -> bool:
        return not (self.new or self.report_changed or self.images_changed)

    def summary(self) -> str:
        return (f"ledger: {len(self.new)} new, {len(self.report_changed)} amended reports, "
                f"{len(self.images_changed)} changed images, {len(self.unchanged)} unchanged")


def ledger_path(warehouse: str | Path) -> Path:
    return Path(warehouse) / RESTRICTED_DIR / LEDGER_FILE


def read_ledger(warehouse: str | Path) -> pa.Table:
    """The ledger (the one an earlier release kept outside restricted/ is read if that is all there is)."""
    path = ledger_path(warehouse)
    contract = ledger_contract()
    if not path.exists():
        path = Path(warehouse) / LEGACY_LEDGER_FILE
        if not path.exists():
            return contract.empty()
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise RadsimError(f"cannot read the ledger {path}: {exc}") from None
    if "files_stat" not in table.column_names:  # written before stat digests: every exam is re-hashed once
        table = table.append_column("files_stat", pa.nulls(table.num_rows, pa.string()))
    return contract.validate(table)


def ledger_rows(table: pa.Table) -> dict[str, dict[str, Any]]:
    return {r["exam_id"]: r for r in table.to_pylist()}


def diff(ledger: pa.Table, prints: dict[str, ExamFingerprint]) -> LedgerDiff:
    rows = ledger_rows(ledger.select(["exam_id", "report_sha256", "image_sha256"]))
    out = LedgerDiff()
    for eid in sorted(prints):
        fp, old = prints[eid], rows.get(eid)
        if old is None:
            out.new.append(eid)
            continue
        changed = False
        if fp.report_sha256 != old["report_sha256"]:
            out.report_changed.append(eid)
            changed = True
        if fp.image_sha256 != old["image_sha256"]:
            out.images_changed.append(eid)
            changed = True
        if not changed:
            out.unchanged.append(eid)
    return out


def update_ledger(ledger: pa.Table, prints: dict[str, ExamFingerprint], keyer: IdKeyer, *,
                  label_status: dict[str, str], shard_status: dict[str, str],
                  published_version: str | None, published: Iterable[str], when: datetime | None = None) -> pa.Table:
    """The ledger after a run: processed exams get their new hashes and statuses, others keep theirs."""
    when = when or now()
    rows = ledger_rows(ledger)
    published = set(published)
    for eid, fp in prints.items():
        old = rows.get(eid)
        touched = eid in label_status or eid in shard_status or eid in published
        if old is not None and not touched:
            continue
        row = dict(old) if old else {"exam_id": eid, "exam_key": keyer.exam_key(eid), "first_seen": when,
                                     "label_status": "pending", "shard_status": "pending", "published_version": None}
        row.update(report_sha256=fp.report_sha256, image_sha256=fp.image_sha256, files_stat=fp.files_stat,
                   last_processed=when)
        if eid in label_status:
            row["label_status"] = label_status[eid]
        if eid in shard_status:
            row["shard_status"] = shard_status[eid]
        if eid in published:
            row["published_version"] = published_version
        rows[eid] = row
    contract = ledger_contract()
    return contract.validate(pa.Table.from_pylist([rows[k] for k in sorted(rows)], schema=contract.schema()))


def refresh_stats(ledger: pa.Table, prints: dict[str, ExamFingerprint]) -> pa.Table:
    """Exams whose files were re-hashed and found unchanged keep their status; only the stat digest moves."""
    stale = {eid: fp.files_stat for eid, fp in prints.items() if fp.rehashed and fp.files_stat is not None}
    if not stale:
        return ledger
    rows = ledger.to_pylist()
    changed = False
    for row in rows:
        new = stale.get(row["exam_id"])
        fp = prints.get(row["exam_id"])
        if new is not None and fp is not None and row["files_stat"] != new and row["image_sha256"] == fp.image_sha256:
            row["files_stat"], changed = new, True
    if not changed:
        return ledger
    contract = ledger_contract()
    return contract.validate(pa.Table.from_pylist(rows, schema=contract.schema()))


def write_ledger(table: pa.Table, warehouse: str | Path) -> Path:
    contract = ledger_contract()
    path = write_parquet_atomic(contract.validate(table), ledger_path(warehouse), contract)
    legacy = Path(warehouse) / LEGACY_LEDGER_FILE
    if legacy.exists():
        legacy.unlink()  # the copy outside restricted/ named raw ids: it goes once the new one is written
    return path


def mark_published(ledger: pa.Table, exam_keys: Iterable[str], version: str | None,
                   when: datetime | None = None) -> pa.Table:
    """After a re-publish without new exams (the `train` flow): the exams now published under `version`."""
    when = when or now()
    keys = set(exam_keys)
    rows = ledger.to_pylist()
    for row in rows:
        if row["exam_key"] in keys:
            row["published_version"], row["last_processed"] = version, when
    contract = ledger_contract()
    return contract.validate(pa.Table.from_pylist(rows, schema=contract.schema()))


def shard_statuses(
    exam_ids: Iterable[str], keyer: IdKeyer, shards_dir: str | Path, refused: set[str]
) -> dict[str, str]:
    """Each exam sent to the shard stage: done when its key is in the manifest and no image was refused."""
    manifest = Path(shards_dir) / MANIFEST_FILE
    listed = set(pq.read_table(manifest, columns=["exam_key"]).column("exam_key").to_pylist()) \
        if manifest.exists() else set()
    return {e: ("done" if keyer.exam_key(e) in listed and e not in refused else "quarantined") for e in exam_ids}


def has_unpublished(ledger: pa.Table, version: str) -> bool:
    """Does a sharded exam lack rows under `version`?"""
    import pyarrow.compute as pc

    done = pc.equal(ledger.column("shard_status"), "done")
    other = pc.fill_null(pc.not_equal(ledger.column("published_version"), version), True)
    return bool(pc.any(pc.and_(done, other)).as_py())
