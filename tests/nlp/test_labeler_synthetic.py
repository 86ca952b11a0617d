"""The labeler against the synthetic cohort's report truth (issue 3): macro-F1 ≥ 0.98 per class."""
from __future__ import annotations

import pyarrow.parquet as pq

from radsim.data_contracts.vocabulary import default_vocabulary
from radsim.nlp.runner import label_file
from radsim.nlp.scoring import score_labels
from radsim.synthetic import generate_cohort

N_EXAMS = 400


def test_macro_f1_against_synthetic_report_truth(tmp_path):
    cohort = generate_cohort(tmp_path / "cohort", exams=N_EXAMS, seed=11, image_size=64, progress=False)
    summary = label_file(cohort.exams_path, tmp_path / "labels.parquet", progress=False)
    assert summary.counts.rows_out == N_EXAMS  # one report per exam, image rows collapsed
    findings = [f for f in default_vocabulary().observed]
    report = score_labels(pq.read_table(tmp_path / "labels.parquet"), pq.read_table(cohort.report_truth_path), findings)
    for cls, value in report.macro.items():
        assert value >= 0.98, f"{cls}:\n" + "\n".join(report.lines())
