"""Inbox → exams rows: a folder of exam folders, or an exams manifest (DESIGN §1, §4).

An exam folder is named by its exam_id and holds `report.txt` plus `<image_index>.dcm|.png|.jpg`
files; an optional `exam.json` gives patient_id, study_date and view_position (needed for
PNG/JPEG, which carry no header). A folder holding neither a report nor images is a batch
folder (e.g. `inbox/resent/<exam_id>/`) and is scanned in turn. The rows go through the same
validation as a manifest (`radsim.data_contracts.ingest.ingest_table`), so a bad exam is
quarantined with a reason code and never stops the batch.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from radsim.data_contracts import (
    QuarantineRecord,
    UsageError,
    load_contract,
    rows_to_table,
)
from radsim.data_contracts.ingest import (
    STAGE,
    IngestResult,
    ingest_manifests,
    ingest_table,
)

IMAGE_SUFFIXES = (".dcm", ".png", ".jpg", ".jpeg")
REPORT_FILE = "report.txt"
EXAM_FILE = "exam.json"
MANIFEST_SUFFIXES = (".csv", ".parquet", ".jsonl")


@dataclass
class InboxScan:
    """Rows found in an inbox folder, and exam folders refused before validation."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    quarantine: list[QuarantineRecord] = field(default_factory=list)
    exam_folders: int = 0


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
    """PatientID, StudyDate and ViewPosition from the header only (pixels are never read here)."""
    try:
        import pydicom

        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception:  # noqa: BLE001 - an unreadable file is the shard stage's `unreadable_image`
        return {}
    return {"patient_id": str(ds.get("PatientID", "") or "").strip() or None,
            "study_date": _date(ds.get("StudyDate", None)),
            "view_position": str(ds.get("ViewPosition", "") or "").strip() or None}


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _is_exam_folder(folder: Path) -> bool:
    return (folder / REPORT_FILE).is_file() or bool(_images(folder))


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


def scan_inbox(inbox: str | Path) -> InboxScan:
    """All exam folders under `inbox`, shallowest first (so a re-sent copy is the duplicate)."""
    root = Path(inbox)
    if not root.is_dir():
        raise UsageError(f"inbox {root} does not exist or is not a folder")
    scan = InboxScan()
    level = [root]
    while level:
        nxt: list[Path] = []
        for parent in level:
            for folder in sorted(p for p in parent.iterdir() if p.is_dir() and not p.name.startswith(".")):
                if _is_exam_folder(folder):
                    scan.exam_folders += 1
                    rows, records = _exam_rows(folder, str(folder.parent.relative_to(root)) if folder.parent != root
                                                else "inbox")
                    scan.rows += rows
                    scan.quarantine += records
                else:
                    nxt.append(folder)
        level = nxt
    return scan


def ingest_inbox(inbox: str | Path) -> IngestResult:
    """An inbox folder or an exams manifest file → one contract-valid exams table plus quarantine."""
    path = Path(inbox)
    if path.is_file():
        if path.suffix.lower() not in MANIFEST_SUFFIXES:
            raise UsageError(f"inbox {path} is a file but not an exams manifest ({', '.join(MANIFEST_SUFFIXES)})")
        return ingest_manifests([path])
    scan = scan_inbox(path)
    contract = load_contract("exams")
    table = rows_to_table(contract, scan.rows) if scan.rows else contract.empty()
    result = ingest_table(table, str(path), source_label=None)
    result.quarantine = scan.quarantine + result.quarantine
    result.counts.rows_in += len(scan.quarantine)
    result.counts.quarantined += len(scan.quarantine)
    result.counts.check()
    return result


def exams_table_for(exams: pa.Table, exam_ids: set[str]) -> pa.Table:
    """The rows of `exams` whose exam_id is in `exam_ids` (the work of one stage)."""
    import pyarrow.compute as pc

    return exams.filter(pc.is_in(exams.column("exam_id"), value_set=pa.array(sorted(exam_ids), pa.string())))
