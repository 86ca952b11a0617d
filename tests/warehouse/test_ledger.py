"""Ledger statuses derived from what the stages left on disk."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from radsim.data_contracts import demo_keyer
from radsim.warehouse.ledger import ExamFingerprint, has_unpublished, read_ledger, shard_statuses, update_ledger


def test_an_exam_is_sharded_only_when_listed_and_not_refused(tmp_path):
    keyer = demo_keyer()
    shards = tmp_path / "shards"
    shards.mkdir()
    pq.write_table(pa.table({"exam_key": [keyer.exam_key("E1"), keyer.exam_key("E2")]}), shards / "manifest.parquet")
    status = shard_statuses(["E1", "E2", "E3"], keyer, shards, refused={"E2"})
    assert status == {"E1": "done", "E2": "quarantined", "E3": "quarantined"}
    assert shard_statuses(["E1"], keyer, tmp_path / "none", refused=set()) == {"E1": "quarantined"}


def test_a_sharded_exam_without_rows_under_the_version_is_unpublished(tmp_path):
    keyer = demo_keyer()
    prints = {e: ExamFingerprint(e, None, f"img-{e}", False) for e in ("E1", "E2")}
    ledger = update_ledger(read_ledger(tmp_path), prints, keyer, label_status={},
                           shard_status={"E1": "done", "E2": "done"}, published_version="v1", published=["E1", "E2"])
    assert not has_unpublished(ledger, "v1")
    assert has_unpublished(ledger, "v2")
    partly = update_ledger(ledger, {"E3": ExamFingerprint("E3", None, "img-E3", False)}, keyer, label_status={},
                           shard_status={"E3": "done"}, published_version=None, published=())
    assert has_unpublished(partly, "v1")
