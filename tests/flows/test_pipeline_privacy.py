"""No identifier outside restricted/: every file a pipeline run leaves, read as a person would (issue 13).

A demo-sized run (bad records included, so every stage quarantines) with an evaluation and a
similar-exam search, then the shared scan (tests/privacy_scan.py) over every file outside
restricted/: shards, manifests, models, published, index, reports, config.json, logs.
"""
from __future__ import annotations

import pyarrow.parquet as pq

from radsim.flows.config import resolve_config

TINY = {"imaging.image_size": 64, "model.image_size": 64, "model.max_steps": 3, "model.batch_size": 16,
        "model.force_promote": True}  # these tests are about runs, not the promotion gates (warehouse/test_promotion)


def test_no_identifier_outside_restricted_after_a_pipeline_run(prefect_harness, tmp_path, privacy_scan):
    from radsim.flows import cli
    from radsim.flows.pipeline import pipeline
    from radsim.synthetic import generate_cohort

    cohort = generate_cohort(tmp_path / "cohort", exams=60, seed=5, image_size=64, bad=True, progress=False)
    wh = tmp_path / "wh"
    cfg = resolve_config({**TINY, "paths.truth": str(cohort.truth_path)}, environ={})
    result = pipeline(str(cohort.inbox), str(wh), config=cfg, demo_key=True, quiet=True)
    assert result.published_rows > 0 and result.headline
    first = pq.read_table(cohort.exams_path).column("exam_id")[0].as_py()
    assert cli.main(["similar", first, "--embeddings", str(wh / "published"), "--demo-key", "--k", "3"]) == 0

    quarantined = pq.read_table(wh / "restricted" / "quarantine.parquet")
    assert set(quarantined.column("stage").to_pylist()) >= {"ingest", "label", "shard"}  # every stage refused one
    scanned = privacy_scan.scanned_files(wh)
    for must in ("config.json", "shards/manifest.parquet", "shards/splits.parquet", "models/current.json"):
        assert must in scanned, must
    for folder in ("shards/", "models/", "published/", "index/", "reports/"):
        assert any(p.startswith(folder) for p in scanned), folder
    assert not any(p.endswith(("ledger.parquet", "quarantine.parquet")) for p in scanned)  # both are restricted
    needles = privacy_scan.inbox_needles(cohort.inbox)
    assert len(needles) > 300
    assert privacy_scan.find_identifiers(wh, needles) == []
    # the same scan does find what is there: raw ids in the restricted tables
    assert privacy_scan.find_identifiers(wh / "restricted", [first], skip=()) != []
