"""The `--bad` set: one record per quarantine reason the ingest stage must catch.

They live in the same inbox but only in bad_exams.csv, so exams.parquet stays valid.
"""
from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

from .dicom_writer import write_dicom
from .images import render_exam
from .plan import DicomVariant, ExamSpec

BAD_COLUMNS = ("exam_id", "patient_id", "image_uri", "image_index", "report_text", "expected_reason")
# The duplicate claims an existing exam id; two folders cannot share a name, so it is a resend batch.
DUPLICATE_DIR = "resent"


def write_bad_records(out_dir: Path, specs: list[ExamSpec], image_size: int) -> list[dict[str, object]]:
    """Write the bad exams into out_dir/inbox and return their rows for bad_exams.csv."""
    inbox = out_dir / "inbox"
    last = specs[-1] if specs else None
    base_num = int(last.exam_id[3:]) + 1000 if last else 29_000_000
    template = specs[0]
    plain = DicomVariant("MONOCHROME2", 12, "none")
    rows: list[dict[str, object]] = []

    def new_spec(k: int, **kw) -> ExamSpec:
        return dataclasses.replace(template, index=10_000_000 + k, exam_id=f"ACC{base_num + k:08d}", variant=plain,
                                   has_lateral=False, **kw)

    def emit(spec: ExamSpec, folder: Path, report: str, reason: str, image_bytes_keep: float | None = None, **dicom_kw):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "report.txt").write_text(report, encoding="utf-8")
        img = render_exam(spec, 0, image_size)
        path = write_dicom(folder / "0.dcm", img, spec, 0, **dicom_kw)
        if image_bytes_keep is not None:
            data = path.read_bytes()
            path.write_bytes(data[: int(len(data) * image_bytes_keep)])
        rows.append({"exam_id": spec.exam_id, "patient_id": spec.patient_id,
                     "image_uri": (folder / "0.dcm").relative_to(out_dir).as_posix(), "image_index": 0,
                     "report_text": report, "expected_reason": reason})

    normal_text = "FINDINGS: The lungs are clear. No pneumothorax.\n\nIMPRESSION: Normal chest radiograph."
    s = new_spec(1)
    emit(s, inbox / s.exam_id, normal_text, "unreadable_image", image_bytes_keep=0.4)
    s = new_spec(2)
    emit(s, inbox / s.exam_id, "", "empty_report")
    if template is not None:
        dup = dataclasses.replace(template, variant=plain, has_lateral=False)
        emit(dup, inbox / DUPLICATE_DIR / dup.exam_id, normal_text, "duplicate_id")
    s = new_spec(3)
    emit(s, inbox / s.exam_id, "FINDINGS: No acute bony injury of the hip.", "not_chest", body_part="HIP")
    return rows


def write_bad_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=BAD_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return path
