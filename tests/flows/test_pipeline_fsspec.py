"""The pipeline with its inbox and warehouse on memory:// (issue 8: storage through fsspec URIs).

A run that crashes leaves the remote warehouse as it was; the rerun publishes the same rows
as a run on the local disk; a third run finds nothing new. Analysts read the published
table straight from the fsspec filesystem with pyarrow.
"""
from __future__ import annotations

import shutil

import pyarrow.parquet as pq
import pytest

from radsim.flows.config import resolve_config

TINY = {"imaging.image_size": 64, "model.image_size": 64, "model.max_steps": 3, "model.batch_size": 8,
        "model.force_promote": True}  # these tests are about runs, not the promotion gates (warehouse/test_promotion)


def test_pipeline_on_memory_urls_matches_the_local_run_and_survives_a_crash(prefect_harness, tmp_path, memory_root,
                                                                           monkeypatch):
    from radsim.flows import pipeline as pipeline_module
    from radsim.synthetic import generate_cohort

    root, fs = memory_root
    cohort = generate_cohort(tmp_path / "cohort", exams=20, seed=21, image_size=64, progress=False)
    fs.put(str(cohort.inbox), f"{root}/inbox", recursive=True)
    inbox, wh = f"{root}/inbox", f"{root}/warehouse"
    cfg = resolve_config(TINY, environ={})

    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash after training, before the ledger is written")

    with monkeypatch.context() as patch:
        patch.setattr("radsim.warehouse.ledger.write_ledger", crash)
        with pytest.raises(RuntimeError, match="simulated crash"):
            pipeline_module.pipeline(inbox, wh, config=cfg, demo_key=True, quiet=True)
    assert not fs.exists(wh), "a crashed run pushed part of its warehouse"

    remote = pipeline_module.pipeline(inbox, wh, config=cfg, demo_key=True, quiet=True)
    assert remote.published_rows > 0 and remote.promotion and remote.promotion["promoted"]
    assert str(remote.outputs["published embeddings"]).startswith(wh + "/")
    for rel in ("restricted/ledger.parquet", "config.json", "shards/manifest.parquet", "models/current.json",
                "restricted/quarantine.parquet"):
        assert fs.exists(f"{wh}/{rel}"), rel
    published_remote = pq.read_table(fs._strip_protocol(f"{wh}/published/embeddings"), filesystem=fs)
    assert published_remote.num_rows == remote.published_rows
    assert "exam_id" not in published_remote.column_names

    local_inbox = tmp_path / "local-inbox"
    shutil.copytree(cohort.inbox, local_inbox)
    local = pipeline_module.pipeline(str(local_inbox), str(tmp_path / "local-wh"), config=cfg, demo_key=True,
                                     quiet=True)
    published_local = pq.read_table(tmp_path / "local-wh" / "published" / "embeddings")
    key = ["exam_key", "image_index"]
    assert sorted(published_remote.select(key).to_pylist(), key=str) == \
        sorted(published_local.select(key).to_pylist(), key=str)
    assert [c.as_dict() for c in remote.counts] == [c.as_dict() for c in local.counts]

    again = pipeline_module.pipeline(inbox, wh, config=cfg, demo_key=True, quiet=True)
    assert again.nothing_new and again.labelled == [] and again.sharded == []
