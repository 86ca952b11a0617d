"""Streaming file labelling: formats, quarantine, duplicates, reconciliation, workers, atomic output."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from radsim.data_contracts import UsageError, load_contract, read_contract_table
from radsim.nlp.runner import label_file, label_reports, quarantine_path_for

REPORTS = [
    "FINDINGS: Small left pleural effusion. No pneumothorax.",
    "Heart size is normal. Lungs clear.",
    "Possible right lower lobe pneumonia.",
    "INDICATION: ? pneumothorax\nFINDINGS: No pneumothorax. ETT in satisfactory position.",
    "The previously seen nodule is no longer visible.",
    "Cardiomegaly with upper lobe diversion, in keeping with pulmonary oedema.",
]


def _table(n: int = 60) -> pa.Table:
    return pa.table(
        {"exam_id": [f"E{i:04d}" for i in range(n)], "report_text": [REPORTS[i % len(REPORTS)] for i in range(n)]}
    )


def _labels(path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def test_parquet_csv_jsonl_and_txt_folder_give_the_same_labels(labeler, tmp_path):
    table = _table(12)
    pq.write_table(table, tmp_path / "in.parquet")
    pacsv.write_csv(table, tmp_path / "in.csv")
    with open(tmp_path / "in.jsonl", "w") as fh:
        for r in table.to_pylist():
            fh.write(json.dumps(r) + "\n")
    folder = tmp_path / "txt"
    folder.mkdir()
    for r in table.to_pylist():
        (folder / f"{r['exam_id']}.txt").write_text(r["report_text"])
    results = []
    for name, src in [
        ("p", tmp_path / "in.parquet"),
        ("c", tmp_path / "in.csv"),
        ("j", tmp_path / "in.jsonl"),
        ("t", folder),
    ]:
        summary = label_file(src, tmp_path / f"{name}.parquet", progress=False, labeler=labeler)
        assert summary.counts.rows_out == 12 and summary.counts.quarantined == 0
        results.append(sorted(_labels(tmp_path / f"{name}.parquet"), key=lambda r: r["exam_id"]))
    assert all(r == results[0] for r in results[1:])
    assert results[0][0]["pleural_effusion"] == 1 and results[0][0]["pneumothorax"] == 0


def test_bad_records_are_quarantined_with_reasons_and_counts_reconcile(labeler, tmp_path):
    table = pa.table({
        "exam_id": ["A", "B", "C", "D", "A", "E", "F", "A"],
        "report_text": [b"No pneumothorax.", b"", b"   \n ", b"\x00" * 50, b"Small effusion.", bytes(range(256)),
                        "Pleural effusion \u2013 small".encode("cp1252"), b"third"],
    })
    pq.write_table(table, tmp_path / "in.parquet")
    out = tmp_path / "labels.parquet"
    summary = label_file(tmp_path / "in.parquet", out, progress=False, labeler=labeler)
    c = summary.counts
    assert (c.rows_in, c.rows_out, c.quarantined, c.skipped) == (8, 2, 6, 0)
    q = pq.read_table(quarantine_path_for(out)).to_pylist()
    reasons = sorted((r["record_id"], r["reason_code"]) for r in q)
    assert reasons == [("A", "duplicate_id"), ("A (row 8)", "duplicate_id"), ("B", "empty_report"),
                       ("C", "empty_report"), ("D", "undecodable_text"), ("E", "undecodable_text")]
    labels = {r["exam_id"]: r for r in _labels(out)}
    assert labels["A"]["pneumothorax"] == 0 and labels["A"]["pleural_effusion"] is None  # first occurrence kept
    assert labels["F"]["pleural_effusion"] == 1  # cp1252 bytes decoded
    assert summary.quarantined_by_reason == {"duplicate_id": 2, "empty_report": 2, "undecodable_text": 2}


def test_exams_table_collapses_image_rows_and_quarantines_a_different_second_report(labeler, tmp_path):
    table = pa.table(
        {
            "exam_id": ["X1", "X1", "X2", "X2", "X3"],
            "patient_id": ["P"] * 5,
            "image_uri": ["u"] * 5,
            "image_index": pa.array([0, 1, 0, 1, 0], pa.int32()),
            "report_text": [
                "Small left effusion.",
                "Small left effusion.",
                "No pneumothorax.",
                "Large pneumothorax.",
                "Normal.",
            ],
        }
    )
    pq.write_table(table, tmp_path / "exams.parquet")
    summary = label_file(tmp_path / "exams.parquet", tmp_path / "labels.parquet", progress=False, labeler=labeler)
    c = summary.counts
    assert (c.rows_in, c.rows_out, c.quarantined, c.skipped) == (5, 3, 1, 1)
    assert pq.read_table(tmp_path / "labels.quarantine.parquet").column("record_id").to_pylist() == ["X2"]


def test_output_is_contract_valid_with_metadata_and_no_temp_left(labeler, tmp_path):
    pq.write_table(_table(20), tmp_path / "in.parquet")
    out = tmp_path / "sub" / "labels.parquet"
    label_file(tmp_path / "in.parquet", out, progress=False, labeler=labeler)
    table = read_contract_table(out, load_contract("labels"))
    assert table.num_rows == 20
    meta = pq.read_schema(out).metadata
    assert b"radsim.vocabulary.name" in meta and b"radsim.labeler_version" in meta
    assert sorted(p.name for p in out.parent.iterdir()) == ["labels.parquet", "labels.quarantine.parquet"]
    q = read_contract_table(quarantine_path_for(out), load_contract("quarantine"))
    assert q.num_rows == 0


def test_streaming_batches_equal_one_batch_and_workers_equal_one_worker(labeler, tmp_path):
    pq.write_table(_table(90), tmp_path / "in.parquet")
    label_file(tmp_path / "in.parquet", tmp_path / "one.parquet", batch_size=1000, progress=False, labeler=labeler)
    label_file(tmp_path / "in.parquet", tmp_path / "small.parquet", batch_size=7, progress=False, labeler=labeler)
    label_file(tmp_path / "in.parquet", tmp_path / "two.parquet", batch_size=16, workers=2, progress=False)
    one = pq.read_table(tmp_path / "one.parquet")
    assert one.equals(pq.read_table(tmp_path / "small.parquet"))
    assert one.equals(pq.read_table(tmp_path / "two.parquet"))  # same rows, same order
    assert pq.ParquetFile(tmp_path / "small.parquet").metadata.num_row_groups > 1


def test_label_reports_streams_tuples_in_batches(labeler):
    records = [(f"R{i}", REPORTS[i % len(REPORTS)]) for i in range(25)] + [("R0", "again"), ("Z", "")]
    batches = list(label_reports(iter(records), batch_size=10, labeler=labeler))
    assert [b.table.num_rows for b in batches] == [10, 10, 5]
    assert [q.reason_code for b in batches for q in b.quarantine] == ["duplicate_id", "empty_report"]
    assert batches[0].rows[0]["exam_id"] == "R0"


@pytest.mark.parametrize("content, suffix", [
    ("id,text\n1,No pneumothorax\n", ".csv"),
    ('{"exam_id": "1"}\n', ".jsonl"),
    (None, ".parquet"),
    ("whatever", ".xlsx"),
])
def test_wrong_schema_is_a_one_line_usage_error(labeler, tmp_path, content, suffix):
    path = tmp_path / f"in{suffix}"
    if content is None:
        pq.write_table(pa.table({"exam_id": ["1"], "report_text": [3]}), path)
    else:
        path.write_text(content)
    with pytest.raises(UsageError) as info:
        label_file(path, tmp_path / "labels.parquet", progress=False, labeler=labeler)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "labels.parquet").exists()
