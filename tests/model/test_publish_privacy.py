"""No free text, name, header value or raw identifier reaches the published table (DESIGN §3)."""
from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.parquet as pq

from radsim.warehouse.published import version_dir

IDENTIFYING = ("PatientName", "PatientID", "AccessionNumber", "PatientBirthDate", "StudyDate", "StudyInstanceUID",
               "SeriesInstanceUID", "SOPInstanceUID", "InstitutionName", "ReferringPhysicianName", "StudyID",
               "OperatorsName", "PerformingPhysicianName", "StationName", "OtherPatientIDs", "StudyDescription")


def _forbidden(cohort) -> set[str]:
    """Header values of every cohort DICOM, raw ids, paths and report sentences."""
    from pydicom import dcmread

    values: set[str] = set()
    for path in sorted(cohort.cohort_dir.joinpath("inbox").rglob("*.dcm")):
        ds = dcmread(path, stop_before_pixels=True)
        for kw in IDENTIFYING:
            if kw in ds and str(ds.data_element(kw).value).strip():
                value = str(ds.data_element(kw).value).strip()
                values.add(value)
                values.update(p for p in re.split(r"[\^ ]", value) if len(p) >= 4)  # name components
    exams = pq.read_table(cohort.exams).to_pylist()
    for row in exams:
        values.update({row["exam_id"], row["patient_id"], row["image_uri"]})
        for sentence in re.split(r"[.\n]", row["report_text"] or ""):
            if len(sentence.strip()) >= 20:
                values.add(sentence.strip())
    return {v for v in values if len(v) >= 4}


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def test_no_identifier_or_text_in_string_columns_or_file_bytes(cohort, published):
    forbidden = _forbidden(cohort)
    assert len(forbidden) > 50  # the scan really has header values, ids and sentences to look for
    (part,) = version_dir(published, "v1").glob("part-*.parquet")
    table = pq.read_table(part)
    cells: set[str] = set()
    for name in table.column_names:
        t = table.schema.field(name).type
        if pa.types.is_string(t) or pa.types.is_list(t):
            for v in table.column(name).to_pylist():
                cells.update(_strings(v))
    meta = " ".join(v.decode() for v in table.schema.metadata.values())
    raw = part.read_bytes()
    record = (published / "_manifests" / "v1.json").read_text()
    leaks = [v for v in forbidden if any(v in c for c in cells) or v in meta or v.encode() in raw or v in record]
    assert leaks == []
    # the columns hold keys, not ids: a raw exam id never equals a published key
    assert not ({r["exam_id"] for r in pq.read_table(cohort.exams).to_pylist()} & cells)


def test_string_columns_are_only_keys_and_codes(published):
    table = pq.read_table(version_dir(published, "v1"))
    assert all(re.fullmatch(r"[0-9a-f]{32}", k) for k in table.column("exam_key").to_pylist())
    assert set(table.column("split").to_pylist()) <= {"train", "val", "test"}
    assert set(table.column("view_position").to_pylist()) <= {"PA", "AP", "LATERAL", "LL", "UNKNOWN", None}
    findings = {f for v in table.column("positive_findings").to_pylist() if v for f in v}
    from radsim.data_contracts import default_vocabulary

    assert findings <= set(default_vocabulary().names)
