"""The warehouse ledger: what was seen, what changed, what each stage did (DESIGN §4, §11, §12).

The ledger, not Prefect's task cache, decides what a run does: Prefect's cache hashes paths
rather than contents and lives in PREFECT_HOME. One row per exam (restricted: raw exam_id).
An exam is *new* when its id is not in the ledger, its *report changed* when the report hash
differs (re-label, re-publish), its *images changed* when the image hash differs (re-shard;
the shard stage refuses different pixels for a sample it already holds).
"""
from __future__ import annotations

import hashlib
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

LEDGER_FILE = "ledger.parquet"

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


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass
class ExamFingerprint:
    exam_id: str
    report_sha256: str | None
    image_sha256: str
    has_report: bool  # False: no report yet; the exam is sharded unlabelled and labelled when it arrives


def fingerprints(exams: pa.Table) -> dict[str, ExamFingerprint]:
    """Per exam: the report hash and one hash over its image files in image_index order.

    A file that cannot be read hashes as "missing:<uri>", so the shard stage (which owns
    `missing_file`) quarantines it and a later, fixed copy counts as changed.
    """
    by_exam: dict[str, list[tuple[int, str]]] = {}
    reports: dict[str, str | None] = {}
    cols = {c: exams.column(c).to_pylist() for c in ("exam_id", "image_index", "image_uri", "report_text")
            if c in exams.column_names}
    texts = cols.get("report_text") or [None] * exams.num_rows
    for eid, idx, uri, text in zip(cols["exam_id"], cols["image_index"], cols["image_uri"], texts):
        try:
            digest = sha256_file(uri) if "://" not in uri else f"uri:{uri}"
        except OSError:
            digest = f"missing:{uri}"
        by_exam.setdefault(eid, []).append((int(idx), digest))
        reports.setdefault(eid, text)
    out = {}
    for eid, parts in by_exam.items():
        h = hashlib.sha256()
        for idx, digest in sorted(parts):
            h.update(f"{idx}:{digest}\n".encode())
        text = reports[eid]
        has = text is not None  # an empty report.txt is labelled (and quarantined as empty_report there)
        out[eid] = ExamFingerprint(eid, sha256_text(text) if text is not None else None, h.hexdigest(), has)
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


def read_ledger(warehouse: str | Path) -> pa.Table:
    path = Path(warehouse) / LEDGER_FILE
    contract = ledger_contract()
    if not path.exists():
        return contract.empty()
    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001
        raise RadsimError(f"cannot read the ledger {path}: {exc}") from None
    return contract.validate(table)


def ledger_rows(table: pa.Table) -> dict[str, dict[str, Any]]:
    return {r["exam_id"]: r for r in table.to_pylist()}


def diff(ledger: pa.Table, prints: dict[str, ExamFingerprint]) -> LedgerDiff:
    rows = ledger_rows(ledger)
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
        row.update(report_sha256=fp.report_sha256, image_sha256=fp.image_sha256, last_processed=when)
        if eid in label_status:
            row["label_status"] = label_status[eid]
        if eid in shard_status:
            row["shard_status"] = shard_status[eid]
        if eid in published:
            row["published_version"] = published_version
        rows[eid] = row
    contract = ledger_contract()
    return contract.validate(pa.Table.from_pylist([rows[k] for k in sorted(rows)], schema=contract.schema()))


def write_ledger(table: pa.Table, warehouse: str | Path) -> Path:
    contract = ledger_contract()
    return write_parquet_atomic(contract.validate(table), Path(warehouse) / LEDGER_FILE, contract)


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
