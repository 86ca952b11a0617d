"""The warehouse's restricted exams and quarantine tables: merged across runs, rewritten only on change."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from radsim.data_contracts import QuarantineRecord, load_contract
from radsim.warehouse.exams import merge_exams
from radsim.warehouse.quarantine import collect_quarantine, file_reason_counts


def _exams(rows: list[tuple[str, str, int]]) -> pa.Table:
    contract = load_contract("exams")
    table = pa.table({"exam_id": [r[0] for r in rows], "patient_id": ["P"] * len(rows),
                      "image_uri": [r[1] for r in rows], "image_index": pa.array([r[2] for r in rows], pa.int32())})
    return contract.validate(table)


def test_todays_exams_replace_their_earlier_rows_and_keep_the_others(tmp_path):
    path = tmp_path / "exams.parquet"
    merge_exams(_exams([("E1", "a.dcm", 0), ("E2", "b.dcm", 0)]), path)
    merged = merge_exams(_exams([("E2", "b2.dcm", 0), ("E3", "c.dcm", 0)]), path)
    on_disk = pq.read_table(path)
    assert on_disk.column("exam_id").to_pylist() == ["E1", "E2", "E3"]
    assert on_disk.column("image_uri").to_pylist() == ["a.dcm", "b2.dcm", "c.dcm"]
    assert merged.num_rows == 3


def test_an_unchanged_inbox_rewrites_nothing(tmp_path):
    path = tmp_path / "exams.parquet"
    merge_exams(_exams([("E1", "a.dcm", 0)]), path)
    before = path.stat().st_mtime_ns, path.stat().st_ino
    merge_exams(_exams([("E1", "a.dcm", 0)]), path)
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == before


def test_quarantine_merges_every_stage_once_and_counts_reasons(tmp_path):
    path = tmp_path / "quarantine.parquet"
    ingest = [QuarantineRecord("ingest", "E1", "duplicate_id", "twice")]
    assert collect_quarantine(path, ingest) == {"duplicate_id": 1}
    stage_file = tmp_path / "shard-quarantine.parquet"
    collect_quarantine(stage_file, [QuarantineRecord("shard", "E2/0", "not_chest", "a hip")])
    assert file_reason_counts(stage_file) == {"not_chest": 1}
    # the same ingest record again and the shard stage's file: each row once
    reasons = collect_quarantine(path, ingest, str(stage_file), None)
    assert reasons == {"duplicate_id": 1, "not_chest": 1}
    assert pq.read_table(path).num_rows == 2
    inode = path.stat().st_ino
    collect_quarantine(path, [], str(stage_file))
    assert path.stat().st_ino == inode  # nothing new: not rewritten
    assert file_reason_counts(tmp_path / "missing.parquet") == {}
