"""Ingest: bad rows are quarantined with a reason, good rows go on, counts reconcile."""
from __future__ import annotations

import csv
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from radsim.data_contracts import ContractViolation, UsageError
from radsim.data_contracts.ingest import ingest_manifests


def _write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def test_good_and_bad_rows_are_separated(tmp_path):
    pq.write_table(pa.table({
        "exam_id": ["E1", "E2"], "patient_id": ["P1", "P2"], "image_uri": ["inbox/E1/0.dcm", "/abs/E2.dcm"],
        "image_index": [0, 0], "report_text": ["No pneumothorax.", "Clear."],
    }), tmp_path / "exams.parquet")
    _write_csv(tmp_path / "more.csv", [
        {"exam_id": "E3", "patient_id": "P3", "image_uri": "x.png", "image_index": "0", "note": "site column"},
        {"exam_id": "E1", "patient_id": "P1", "image_uri": "again.dcm", "image_index": "0", "note": ""},
        {"exam_id": "E4", "patient_id": "", "image_uri": "y.png", "image_index": "0", "note": ""},
        {"exam_id": "E2", "patient_id": "P9", "image_uri": "z.png", "image_index": "1", "note": ""},
    ])
    result = ingest_manifests([tmp_path / "exams.parquet", tmp_path / "more.csv"])
    assert result.exams.column("exam_id").to_pylist() == ["E1", "E2", "E3"]
    reasons = sorted((r.record_id.split("/")[0], r.reason_code) for r in result.quarantine)
    assert reasons == [("E1", "duplicate_id"), ("E2", "duplicate_id"), ("E4", "schema_violation")]
    assert result.counts.rows_in == 6 and result.counts.rows_out == 3 and result.counts.quarantined == 3
    assert result.dropped_columns == ["note"]
    uris = result.exams.column("image_uri").to_pylist()
    assert uris[0] == str((tmp_path / "inbox/E1/0.dcm").resolve()) and uris[1] == "/abs/E2.dcm"
    assert result.exams.column("source").to_pylist() == ["exams.parquet", "exams.parquet", "more.csv"]


def test_duplicates_within_one_manifest_do_not_fail_the_batch(tmp_path):
    _write_csv(tmp_path / "m.csv", [
        {"exam_id": "E1", "patient_id": "P1", "image_uri": "a.dcm"},
        {"exam_id": "E1", "patient_id": "P1", "image_uri": "b.dcm"},
    ])
    result = ingest_manifests([tmp_path / "m.csv"])
    assert result.exams.num_rows == 1 and [r.reason_code for r in result.quarantine] == ["duplicate_id"]
    assert result.exams.column("image_index").to_pylist() == [0]


def test_missing_column_is_a_table_level_error(tmp_path):
    _write_csv(tmp_path / "m.csv", [{"exam_id": "E1", "image_uri": "a.dcm"}])
    with pytest.raises(ContractViolation, match="patient_id"):
        ingest_manifests([tmp_path / "m.csv"])


def test_missing_manifest_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        ingest_manifests([tmp_path / "nope.csv"])


def test_ingest_table_validates_rows_made_in_memory(tmp_path):
    """An inbox scan's rows go through the same checks as a manifest's (radsim.warehouse.inbox)."""
    from radsim.data_contracts.ingest import ingest_table

    table = pa.table({"exam_id": ["E1", "E1", "E2", "E3"], "patient_id": ["P1", "P1", None, "P3"],
                      "image_uri": ["1.dcm", "1.dcm", "2.dcm", "/abs/3.dcm"], "image_index": [0, 0, 0, 0],
                      "site_note": ["x"] * 4})
    result = ingest_table(table, str(tmp_path), source_label="inbox")
    assert result.exams.column("exam_id").to_pylist() == ["E1", "E3"]
    assert sorted(r.reason_code for r in result.quarantine) == ["duplicate_id", "schema_violation"]
    assert result.counts.rows_in == 4 and result.counts.balanced
    assert result.dropped_columns == ["site_note"]
    uris = result.exams.column("image_uri").to_pylist()
    assert uris == [str((tmp_path / "1.dcm").resolve()), "/abs/3.dcm"]
    assert set(result.exams.column("source").to_pylist()) == {"inbox"}


def test_a_duplicate_keeps_its_record_id_as_the_inbox_grows(tmp_path):
    from radsim.data_contracts.ingest import split_duplicates
    from radsim.data_contracts.quarantine import quarantine_table
    from radsim.warehouse.quarantine import collect_quarantine

    def table(ids_uris):
        return pa.table({"exam_id": [e for e, _ in ids_uris], "patient_id": ["P"] * len(ids_uris),
                         "image_uri": [u for _, u in ids_uris], "image_index": [0] * len(ids_uris)})

    first = [("E1", "/in/E1/0.dcm"), ("E2", "/in/E2/0.dcm"), ("E1", "/in/resent/E1/0.dcm")]
    grown = [("E0", "/in/E0/0.dcm"), *first[:2], ("E3", "/in/E3/0.dcm"), first[2]]  # new exams before and after
    _, before = split_duplicates(table(first))
    _, after = split_duplicates(table(grown))
    assert [r.record_id for r in before] == [r.record_id for r in after] == ["E1/0 (copy at /in/resent/E1/0.dcm)"]
    path = tmp_path / "quarantine.parquet"
    collect_quarantine(path, before)
    assert collect_quarantine(path, after) == {"duplicate_id": 1}  # one file, one row, however many runs
    _, twice = split_duplicates(table([*first, first[2]]))  # the same file listed twice more
    assert [r.record_id for r in twice] == [
        "E1/0 (copy at /in/resent/E1/0.dcm)",
        "E1/0 (copy at /in/resent/E1/0.dcm #2)",
    ]
    assert quarantine_table(twice).num_rows == 2  # both rows keep a key of their own
