"""Quarantine rows keep every refused record; counts must reconcile."""
from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from radsim.data_contracts import (
    ContractViolation,
    QuarantineRecord,
    ReconciliationError,
    StageCounts,
    load_contract,
    merge_quarantine,
    quarantine_table,
    reason_codes,
    write_parquet_atomic,
)


def test_reason_codes_come_from_the_contract():
    codes = reason_codes()
    for code in ("empty_report", "duplicate_id", "not_chest", "unsupported_transfer_syntax", "implausible_size"):
        assert code in codes


def test_unknown_reason_code_is_a_bug():
    with pytest.raises(ValueError):
        QuarantineRecord("label", "E1", "because", "m")


def test_quarantine_table_validates_and_flattens_messages():
    table = quarantine_table([
        QuarantineRecord("label", "E1", "empty_report", "report is empty\n\nreally"),
        QuarantineRecord("label", "E1", "empty_report", "seen twice"),
        QuarantineRecord("shard", "E2/0", "not_chest", "BodyPartExamined HIP", "inbox/E2/0.dcm"),
    ])
    assert table.num_rows == 2
    assert table.column("message").to_pylist()[0] == "report is empty really"
    assert table.schema.metadata[b"radsim.contract"] == b"quarantine"


def test_merge_keeps_first_sighting_and_adds_new():
    old = quarantine_table([QuarantineRecord("label", "E1", "empty_report", "first")])
    new = quarantine_table([
        QuarantineRecord("label", "E1", "empty_report", "second"),
        QuarantineRecord("label", "E9", "duplicate_id", "dup"),
    ])
    merged = merge_quarantine(old, new)
    assert merged.num_rows == 2
    assert dict(zip(merged.column("record_id").to_pylist(), merged.column("message").to_pylist()))["E1"] == "first"


def test_counts_reconcile_or_raise():
    ok = StageCounts("label", rows_in=10, rows_out=7, quarantined=2, skipped=1)
    assert ok.check() is ok
    assert "10 in = 7 out + 2 quarantined + 1 skipped" in ok.summary()
    with pytest.raises(ReconciliationError, match="does not reconcile"):
        StageCounts("label", rows_in=10, rows_out=7, quarantined=2, skipped=0).check()


def test_atomic_write_validates_and_leaves_no_temp_files(tmp_path):
    table = quarantine_table([QuarantineRecord("label", "E1", "empty_report", "m")])
    path = write_parquet_atomic(table, tmp_path / "q.parquet", load_contract("quarantine"))
    assert pq.read_table(path).num_rows == 1
    assert [p.name for p in tmp_path.iterdir()] == ["q.parquet"]


def test_atomic_write_keeps_old_file_when_validation_fails(tmp_path):
    contract = load_contract("quarantine")
    path = tmp_path / "q.parquet"
    write_parquet_atomic(quarantine_table([QuarantineRecord("label", "E1", "empty_report", "m")]), path, contract)
    bad = quarantine_table([QuarantineRecord("label", "E2", "empty_report", "m")]).drop_columns(["message"])
    with pytest.raises(ContractViolation, match="message"):
        write_parquet_atomic(bad, path, contract)
    assert pq.read_table(path).column("record_id").to_pylist() == ["E1"]
    assert [p.name for p in tmp_path.iterdir()] == ["q.parquet"]
