"""Ingest: turn site manifests into one valid exams table, quarantining bad rows (DESIGN §1, §12).

A whole-table problem (a missing column, an unreadable file) is a usage error; a bad *row*
(a duplicate exam id, a missing required value) is quarantined so the rest of the batch runs.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .contract import load_contract
from .quarantine import QuarantineRecord
from .reconcile import StageCounts
from .tableio import read_input_table

STAGE = "ingest"
REQUIRED = ("exam_id", "patient_id", "image_uri")


@dataclass
class IngestResult:
    exams: pa.Table
    quarantine: list[QuarantineRecord] = field(default_factory=list)
    counts: StageCounts = field(default_factory=lambda: StageCounts(STAGE))
    dropped_columns: list[str] = field(default_factory=list)


def split_duplicates(exams: pa.Table, stage: str = STAGE) -> tuple[pa.Table, list[QuarantineRecord]]:
    """Keep the first row of each (exam_id, image_index); later ones are `duplicate_id`.

    An exam_id that reappears under another patient_id is a duplicate too: one exam belongs
    to one patient. This runs before contract validation, whose unique-key rule would
    otherwise reject the whole table.
    """
    if "exam_id" not in exams.column_names or exams.num_rows == 0:
        return exams, []
    if "image_index" in exams.column_names:
        try:
            idx = pc.cast(exams.column("image_index"), pa.int64()).to_pylist()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return exams, []  # the contract reports the bad values
    else:
        idx = [0] * exams.num_rows
    ids = exams.column("exam_id").to_pylist()
    patients = exams.column("patient_id").to_pylist() if "patient_id" in exams.column_names else [None] * exams.num_rows
    uris = exams.column("image_uri").to_pylist() if "image_uri" in exams.column_names else [None] * exams.num_rows
    seen: set[tuple[Any, Any]] = set()
    owner: dict[Any, Any] = {}
    keep: list[bool] = []
    records: list[QuarantineRecord] = []
    copies: dict[tuple[Any, Any, Any], int] = {}
    for n, (eid, ix, pid, uri) in enumerate(zip(ids, idx, patients, uris)):
        key = (eid, 0 if ix is None else ix)
        if eid is None:
            keep.append(True)  # the contract's not-null rule reports it
            continue
        if key in seen:
            reason = (
                f"exam_id {eid} image_index {key[1]} appears more than once; the first row (not row {n + 1}) was kept"
            )
        elif pid is not None and owner.setdefault(eid, pid) != pid:
            reason = (
                f"exam_id {eid} appears under two patient ids; the first patient's rows were kept (row {n + 1} refused)"
            )
        else:
            seen.add(key)
            keep.append(True)
            continue
        keep.append(False)
        records.append(QuarantineRecord(stage, _duplicate_id(eid, key[1], uri, copies), "duplicate_id", reason, uri))
    return exams.filter(pa.array(keep)), records


def _duplicate_id(eid: Any, index: Any, uri: Any, copies: dict[tuple[Any, Any, Any], int]) -> str:
    """A duplicate's record id names its file, not its row: the same copy keeps its id as the inbox grows.

    So a re-sent copy is one row of the quarantine table however many runs see it (the table keeps
    the first sighting of each id). The same file listed again is told apart by its count (#2, #3).
    """
    copies[(eid, index, uri)] = count = copies.get((eid, index, uri), 0) + 1
    return f"{eid}/{index} (copy at {uri or 'no image_uri'}{f' #{count}' if count > 1 else ''})"


def _split_missing(table: pa.Table, source: str) -> tuple[pa.Table, list[QuarantineRecord]]:
    """Rows without an exam id, patient id or image are `schema_violation`, not a failed batch."""
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing or table.num_rows == 0:
        return table, []  # a missing column is the contract's (table-level) error
    bad = pa.array([False] * table.num_rows)
    for col in REQUIRED:
        arr = table.column(col)
        empty = pc.or_(pc.is_null(arr), pc.equal(pc.utf8_trim_whitespace(pc.cast(arr, pa.string())), ""))
        bad = pc.or_(bad, pc.fill_null(empty, True))
    records = []
    for n, row in enumerate(table.filter(bad).to_pylist()):
        absent = [c for c in REQUIRED if not str(row.get(c) or "").strip()]
        rid = str(row.get("exam_id") or f"{Path(source).name}#row{n + 1}")
        records.append(
            QuarantineRecord(STAGE, rid, "schema_violation", f"missing {', '.join(absent)} in {source}", source)
        )
    return table.filter(pc.invert(bad)), records


def _resolve_uris(table: pa.Table, base_dir: Path) -> pa.Table:
    """Relative image paths are relative to their manifest's folder; make them absolute once, here."""
    uris = []
    for uri in table.column("image_uri").to_pylist():
        if "://" in uri or os.path.isabs(uri):  # os.path, not Path: this runs once per image every night
            uris.append(uri)
        else:
            uris.append(str((base_dir / uri).resolve()))
    return table.set_column(table.column_names.index("image_uri"), "image_uri", pa.array(uris, pa.string()))


def _ingest_one(raw: pa.Table, source: str, label: str, base_dir: Path, records: list[QuarantineRecord],
                dropped: list[str]) -> pa.Table:
    """One input table: drop unknown columns, quarantine bad rows, validate, resolve image paths."""
    contract = load_contract("exams")
    extra = [c for c in raw.column_names if c not in contract.column_names]
    raw = raw.drop_columns(extra)  # e.g. a site's own bookkeeping columns; never passed on
    dropped += [c for c in extra if c not in dropped]
    raw, missing = _split_missing(raw, source)
    raw, dups = split_duplicates(raw)
    records += missing + dups
    table = contract.validate(_with_source(raw, label)) if raw.num_rows else contract.empty()
    return _resolve_uris(table, base_dir)


def _finish(tables: list[pa.Table], records: list[QuarantineRecord], rows_in: int, dropped: list[str]) -> IngestResult:
    contract = load_contract("exams")
    combined = pa.concat_tables(tables) if tables else contract.empty()
    kept, dups = split_duplicates(combined)
    records += dups
    exams = contract.validate(kept)
    counts = StageCounts(STAGE, rows_in=rows_in, rows_out=exams.num_rows, quarantined=len(records)).check()
    return IngestResult(exams, records, counts, dropped)


def ingest_table(table: pa.Table, source: str, source_label: str | None = None,
                 base_dir: str | Path | None = None) -> IngestResult:
    """Validate an in-memory exams table (e.g. rows scanned from an inbox folder) like a manifest."""
    records: list[QuarantineRecord] = []
    dropped: list[str] = []
    base = Path(base_dir) if base_dir is not None else Path(source).resolve()
    one = _ingest_one(table, source, source_label or Path(source).name, base, records, dropped)
    return _finish([one], records, table.num_rows, dropped)


def ingest_manifests(paths: Iterable[str | Path], source_label: str | None = None) -> IngestResult:
    """Read exams manifests (CSV, Parquet or JSONL) into one contract-valid exams table."""
    tables: list[pa.Table] = []
    records: list[QuarantineRecord] = []
    rows_in = 0
    dropped: list[str] = []
    for path in paths:
        path = Path(path)
        raw = read_input_table(path)
        rows_in += raw.num_rows
        tables.append(_ingest_one(raw, str(path), source_label or path.name, path.resolve().parent, records, dropped))
    return _finish(tables, records, rows_in, dropped)


def _with_source(table: pa.Table, label: str) -> pa.Table:
    if "source" in table.column_names:
        return table
    return table.append_column("source", pa.array([label] * table.num_rows, pa.string()))
