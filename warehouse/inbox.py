"""Inbox → exams rows: a folder of exam folders, or an exams manifest (DESIGN §1, §4).

An exam folder is named by its exam_id and holds `report.txt` plus `<image_index>.dcm|.png|.jpg`
files; an optional `exam.json` gives patient_id, study_date and view_position (needed for
PNG/JPEG, which carry no header). A folder holding neither a report nor images is a batch
folder (e.g. `inbox/resent/<exam_id>/`) and is scanned in turn. The rows go through the same
validation as a manifest (`radsim.data_contracts.ingest.ingest_table`), so a bad exam is
quarantined with a reason code and never stops the batch.

With an inbox index (`restricted/inbox_index.parquet`), a folder whose files' stat digest is
unchanged is not opened: its rows come from the index, so a nightly run over an unchanged inbox
reads directory listings and stats, not files.
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from radsim.data_contracts import QuarantineRecord, UsageError, load_contract
from radsim.data_contracts.ingest import STAGE, IngestResult, ingest_manifests, ingest_table
from radsim.warehouse.inbox_index import ROW_COLUMNS, InboxIndex, folder_rows, folder_stat, index_table, refusals_of

IMAGE_SUFFIXES = (".dcm", ".png", ".jpg", ".jpeg")
REPORT_FILE = "report.txt"
EXAM_FILE = "exam.json"
MANIFEST_SUFFIXES = (".csv", ".parquet", ".jsonl")


@dataclass
class InboxScan:
    """Rows found in an inbox folder, and exam folders refused before validation."""

    table: pa.Table  # exams rows in scan order (shallowest folder first), before validation
    quarantine: list[QuarantineRecord] = field(default_factory=list)
    exam_folders: int = 0
    files_stat: dict[str, str] = field(default_factory=dict)  # exam_id -> stat digest of its (first) folder
    index: InboxIndex | None = None  # the index this scan makes (for the next one)
    reused: int = 0  # folders whose rows came from the index, without opening a file
    index_changed: bool = True


def _date(value: Any) -> date | None:
    if value in (None, ""):
        return None
    text = str(value).strip()
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return None


def _dicom_header(path: Path) -> dict[str, Any]:
    """PatientID, StudyDate and ViewPosition from the header only (pixels are never read here).

    A corrupt or truncated file gives no header fields: the shard stage quarantines it as
    `unreadable_image` with the decoder's reason. Anything else (pydicom missing, a bug) is not
    bad input and propagates.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except (InvalidDicomError, OSError, EOFError, ValueError, struct.error, UnicodeDecodeError, KeyError, IndexError):
        return {}
    return {"patient_id": str(ds.get("PatientID", "") or "").strip() or None,
            "study_date": _date(ds.get("StudyDate", None)),
            "view_position": str(ds.get("ViewPosition", "") or "").strip() or None}


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _is_exam_folder(files: list[os.DirEntry]) -> bool:
    return any(e.name == REPORT_FILE or os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES for e in files)


def _exam_rows(folder: Path, source: str) -> tuple[list[dict[str, Any]], list[QuarantineRecord]]:
    exam_id = folder.name
    meta: dict[str, Any] = {}
    if (folder / EXAM_FILE).is_file():
        try:
            meta = json.loads((folder / EXAM_FILE).read_text(encoding="utf-8"))
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
        except (ValueError, UnicodeDecodeError) as exc:
            return [], [QuarantineRecord(STAGE, exam_id, "schema_violation", f"{EXAM_FILE} is not valid JSON: {exc}",
                                         str(folder / EXAM_FILE))]
    report_path = folder / REPORT_FILE
    report: str | None = None
    if report_path.is_file():
        raw = report_path.read_bytes()
        try:
            report = raw.decode("utf-8")
        except UnicodeDecodeError:
            report = raw.decode("cp1252", errors="replace")  # the labeler's own fallback (DESIGN §6)
    images = _images(folder)
    if not images:
        return [], [QuarantineRecord(STAGE, exam_id, "missing_file", "exam folder has a report but no image "
                                     f"({', '.join(IMAGE_SUFFIXES)})", str(folder))]
    rows, records = [], []
    header: dict[str, Any] = {}
    for img in images:
        if img.suffix.lower() == ".dcm" and not header:
            header = _dicom_header(img)
    for img in images:
        if not img.stem.isdigit():
            records.append(QuarantineRecord(STAGE, f"{exam_id}/{img.name}", "schema_violation",
                                            "image file names must be <image_index> (0.dcm, 1.png, ...)", str(img)))
            continue
        own = _dicom_header(img) if img.suffix.lower() == ".dcm" and len(images) > 1 else header
        rows.append({
            "exam_id": exam_id,
            "patient_id": str(meta.get("patient_id") or "").strip() or header.get("patient_id"),
            "image_uri": str(img.resolve()),
            "image_index": int(img.stem),
            "report_text": report,
            "study_date": _date(meta.get("study_date")) or header.get("study_date"),
            "view_position": meta.get("view_position") or own.get("view_position"),
            "source": source,
        })
    return rows, records


def scan_inbox(inbox: str | Path, index: InboxIndex | None = None) -> InboxScan:
    """All exam folders under `inbox`, shallowest first (so a re-sent copy is the duplicate).

    With `index` (the last scan's), a folder whose files' stats are unchanged is taken from it
    without opening any of its files.
    """
    root = Path(inbox)
    if not root.is_dir():
        raise UsageError(f"inbox {root} does not exist or is not a folder")
    index = index or InboxIndex.empty()
    order: list[str] = []  # folders in scan order
    digests: dict[str, str] = {}
    reused: list[str] = []
    fresh: list[dict] = []  # index rows of the folders opened this time
    exam_of: dict[str, str] = {}
    start = len(str(root)) + 1
    level = [str(root)]
    while level:  # os.scandir and strings: this loop runs for every exam folder every night
        nxt: list[str] = []
        for parent in level:
            with os.scandir(parent) as it:
                folders = sorted((e for e in it if e.is_dir() and not e.name.startswith(".")), key=lambda e: e.name)
            for entry in folders:
                with os.scandir(entry.path) as it:
                    files = [e for e in it if e.is_file()]
                if not _is_exam_folder(files):
                    nxt.append(entry.path)
                    continue
                rel = entry.path[start:].replace(os.sep, "/")
                digest = folder_stat(files)
                order.append(rel)
                digests[rel] = digest
                exam_of.setdefault(entry.name, digest)
                if index.stats.get(rel) == digest:
                    reused.append(rel)
                else:
                    source = rel.rsplit("/", 1)[0] if "/" in rel else "inbox"
                    rows, records = _exam_rows(Path(entry.path), source)
                    fresh += folder_rows(rel, digest, rows, records)
        level = nxt
    combined = pa.concat_tables([index.select(reused), index_table(fresh)]) if (reused or fresh) else \
        InboxIndex.empty().table
    position = pc.index_in(combined.column("folder"), value_set=pa.array(order, pa.string()))
    combined = combined.take(pc.sort_indices(pa.table({"p": position, "i": combined.column("image_index")}),
                                             sort_keys=[("p", "ascending"), ("i", "ascending")]))
    rows = combined.filter(pc.is_valid(combined.column("exam_id"))).select(list(ROW_COLUMNS))
    contract = load_contract("exams")
    loose = pa.schema([contract.schema().field(c).with_nullable(True) for c in ROW_COLUMNS])  # validation follows
    table = rows.cast(loose) if rows.num_rows else contract.empty()
    return InboxScan(table=table, quarantine=refusals_of(combined), exam_folders=len(order), files_stat=exam_of,
                     index=InboxIndex(combined, digests),
                     reused=len(reused), index_changed=bool(fresh) or set(order) != set(index.stats))


def manifest_files_stat(exams: pa.Table) -> dict[str, str | None]:
    """Per exam of an exams manifest: the stat digest of its image files (no file opened)."""
    from radsim.warehouse.ledger import stat_digest

    by_exam: dict[str, list[str]] = {}
    for eid, uri in zip(exams.column("exam_id").to_pylist(), exams.column("image_uri").to_pylist()):
        by_exam.setdefault(eid, []).append(uri)
    return {eid: (None if any("://" in u for u in uris) else stat_digest(uris)) for eid, uris in by_exam.items()}


@dataclass
class Ingested:
    """An ingest's result, with what change detection needs: per-exam stat digests and the new index."""

    result: IngestResult
    files_stat: dict[str, str | None]
    index: InboxIndex | None = None  # folder inboxes only: the index this scan makes
    index_changed: bool = False
    folders_reused: int = 0
    folders: int = 0

    @property
    def stat_covers_reports(self) -> bool:
        """A folder inbox's stat digests include report.txt; a manifest's cover its image files only."""
        return self.index is not None


def ingest_inbox_indexed(inbox: str | Path, index: InboxIndex | None = None) -> Ingested:
    """`ingest_inbox` with stat-based change detection (`index=None`: read every folder)."""
    path = Path(inbox)
    if path.is_file():
        result = ingest_inbox(path)
        return Ingested(result, manifest_files_stat(result.exams))
    scan = scan_inbox(path, index)
    return Ingested(_ingest_scan(path, scan), dict(scan.files_stat), scan.index, scan.index_changed, scan.reused,
                    scan.exam_folders)


def ingest_inbox(inbox: str | Path) -> IngestResult:
    """An inbox folder or an exams manifest file → one contract-valid exams table plus quarantine."""
    path = Path(inbox)
    if path.is_file():
        if path.suffix.lower() not in MANIFEST_SUFFIXES:
            raise UsageError(f"inbox {path} is a file but not an exams manifest ({', '.join(MANIFEST_SUFFIXES)})")
        return ingest_manifests([path])
    return _ingest_scan(path, scan_inbox(path))


def _ingest_scan(path: Path, scan: InboxScan) -> IngestResult:
    result = ingest_table(scan.table, str(path), source_label=None)
    result.quarantine = scan.quarantine + result.quarantine
    result.counts.rows_in += len(scan.quarantine)
    result.counts.quarantined += len(scan.quarantine)
    result.counts.check()
    return result


def exams_table_for(exams: pa.Table, exam_ids: set[str]) -> pa.Table:
    """The rows of `exams` whose exam_id is in `exam_ids` (the work of one stage)."""
    import pyarrow.compute as pc

    return exams.filter(pc.is_in(exams.column("exam_id"), value_set=pa.array(sorted(exam_ids), pa.string())))
