"""Synthetic cohorts for the benchmarks: ingest, label and shard a generated cohort (demo key)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from radsim.warehouse.layout import EXAMS_FILE, LABELS_FILE


def label_and_shard(cohort: Any, work: Path, shards: Path, image_size: int, workers: int) -> None:
    """cohort (a generate_cohort summary) → WORK/exams.parquet, WORK/labels.parquet and SHARDS."""
    from radsim.data_contracts import demo_keyer, load_contract, write_parquet_atomic
    from radsim.data_contracts.ingest import ingest_manifests
    from radsim.imaging.shards import write_shards
    from radsim.nlp.runner import label_file

    exams = ingest_manifests([cohort.exams_path]).exams
    write_parquet_atomic(exams, work / EXAMS_FILE, load_contract("exams"))
    label_file(work / EXAMS_FILE, work / LABELS_FILE, progress=False)
    write_shards(work / EXAMS_FILE, work / LABELS_FILE, shards, keyer=demo_keyer(), image_size=image_size,
                 workers=workers, progress=False)
