"""`radsim label` end to end through the CLI entry point (in process) and the Prefect flow."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from radsim.flows.cli import main


def _input(tmp_path):
    path = tmp_path / "reports.csv"
    path.write_text(
        'exam_id,report_text\nA1,"FINDINGS: Small left effusion.\nNo pneumothorax."\nA2,"Normal heart size."\n'
        'A3,""\nA1,"Second copy"\n',
        encoding="utf-8",
    )
    return path


def test_cli_labels_and_prints_counts_and_reconciliation(tmp_path, capsys):
    out = tmp_path / "labels.parquet"
    assert main(["label", str(_input(tmp_path)), "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "labelled 2 report(s), quarantined 2" in text
    assert "quarantined duplicate_id: 1" in text and "quarantined empty_report: 1" in text
    assert "label: 4 in = 2 out + 2 quarantined + 0 skipped" in text
    assert any(line.split()[:2] == ["pleural_effusion", "1"] for line in text.splitlines())
    assert pq.read_table(out).num_rows == 2 and (tmp_path / "labels.quarantine.parquet").exists()


def test_cli_explain_prints_evidence(tmp_path, capsys):
    assert main(["label", str(_input(tmp_path)), "--explain", "A1"]) == 0
    text = capsys.readouterr().out
    assert "pleural_effusion: 1 positive" in text and "Small left effusion." in text
    assert "pneumothorax: 0 negated" in text and "trigger='No'" in text
    assert "fracture: null" in text


def test_cli_wrong_schema_and_missing_out_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"id": ["1"], "text": ["No effusion."]}), bad)
    assert main(["label", str(bad), "--out", str(tmp_path / "l.parquet")]) == 2
    err = capsys.readouterr().err
    assert "lacks column(s) exam_id, report_text" in err and len(err.strip().splitlines()) == 1
    assert main(["label", str(bad)]) == 2
    assert main(["label", str(_input(tmp_path)), "--explain", "NOPE"]) == 2


def test_cli_vocabulary_file_extends(tmp_path, capsys):
    vocab = tmp_path / "v.yaml"
    vocab.write_text("name: site\nversion: '1'\nfindings:\n  - name: pneumoperitoneum\n    synonyms: [free gas]\n")
    src = tmp_path / "r.jsonl"
    src.write_text('{"exam_id": "Z", "report_text": "Free gas under the diaphragm."}\n')
    out = tmp_path / "l.parquet"
    assert main(["label", str(src), "--out", str(out), "--vocabulary", str(vocab), "--no-progress"]) == 0
    row = pq.read_table(out).to_pylist()[0]
    assert row["pneumoperitoneum"] == 1 and row["no_finding"] == 0


def test_label_reports_flow_runs_through_prefect(prefect_harness, tmp_path):
    from prefect.artifacts import Artifact

    from radsim.flows.label_reports import label_reports

    out = tmp_path / "labels.parquet"
    summary = label_reports(str(_input(tmp_path)), str(out), progress=False)
    assert summary.counts.balanced and summary.counts.rows_out == 2
    assert pq.read_table(out).num_rows == 2
    artifact = Artifact.get("label-counts")
    assert artifact is not None and "pleural_effusion" in str(artifact.data)
