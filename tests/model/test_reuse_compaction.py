"""A published version's rows are reused across a shard compaction: nothing is re-embedded (issue 15).

The cohort arrives in 30 increments (one shard each), is published, and then the small shards are
compacted into one. The next publication reuses every row: the table is bit for bit the one
published before, and the record names the merged shard. A full re-embed of the compacted folder
agrees within float32 rounding (a batch never spans two shards, so batches differ).
"""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

INCREMENTS = 30


@pytest.fixture(scope="module")
def loaded(model_dir):
    from radsim.model.checkpoint import load_model

    return load_model(model_dir)


def _shard(cohort, out, exams, compact_after):
    from radsim.data_contracts import demo_keyer
    from radsim.imaging.shards import ShardSite, write_shards

    return write_shards(exams, cohort.labels, out, keyer=demo_keyer(), image_size=64, progress=False,
                        site=ShardSite(base_dir=cohort.exams.parent), compact_after=compact_after)


def _table(published):
    from radsim.warehouse.published import open_version

    return open_version(published, "v1").read().replace_schema_metadata(None)


def test_reuse_survives_a_compaction_and_the_table_is_unchanged(cohort, loaded, tmp_path, monkeypatch):
    import radsim.model.publish as mp
    import radsim.model.shard_embedding as shard_embedding

    exams = pq.read_table(cohort.exams)
    ids = sorted(set(exams.column("exam_id").to_pylist()))
    first = len(ids) - INCREMENTS + 1
    shards = tmp_path / "shards"
    for k in range(first, len(ids) + 1):  # 30 increments, the first with several exams, then one a night
        wanted = pa.array(ids[:k], pa.string())
        _shard(cohort, shards, exams.filter(pc.is_in(exams.column("exam_id"), value_set=wanted)), 0)
    assert len(set(pq.read_table(shards / "manifest.parquet").column("shard").to_pylist())) == INCREMENTS
    published = tmp_path / "published"
    mp.publish_embedded(mp.embed_shards(loaded, shards, batch_size=4, device="cpu"), loaded, published)
    before = _table(published)

    compacted = _shard(cohort, shards, exams, 2)  # no new exam: the tail of small shards is merged
    assert len(compacted.compaction.merged) == INCREMENTS and compacted.wrote_nothing
    plan = mp.plan_reuse(published, shards, loaded)
    assert plan.embed == [] and plan.reused_rows == before.num_rows, plan.note
    embedded: list[int] = []
    real = shard_embedding.embed_part
    monkeypatch.setattr(shard_embedding, "embed_part", lambda *a, **k: embedded.append(1) or real(*a, **k))
    merged = mp.embed_shards(loaded, shards, batch_size=4, device="cpu", reuse=plan)
    assert embedded == []  # nothing re-embedded
    mp.publish_embedded(merged, loaded, published)
    assert _table(published).equals(before)  # bit for bit
    record = json.loads((published / "_manifests" / "v1.json").read_text())
    assert list(record["shards"]) == compacted.compaction.written
    assert record["shard_rows"] == {compacted.compaction.written[0]: before.num_rows}

    monkeypatch.undo()
    full = mp.embed_shards(loaded, shards, batch_size=4, device="cpu")  # a full re-embed of the new layout
    assert full.exam_keys == before.column("exam_key").to_pylist()
    old = np.stack(before.column("embedding").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(full.embeddings, old, atol=1e-5)
