"""Bad input a new user meets: overlong reports, huge CSV cells, a closed stdout pipe.

Each test shows the good rows written and the bad one accounted for: in = out + quarantined + skipped.
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq

from radsim.data_contracts import load_contract, read_contract_table
from radsim.nlp.runner import label_file, quarantine_path_for
from radsim.nlp.text import MAX_REPORT_CHARS

GOOD = [
    "No pneumothorax. Small left effusion.",
    "Heart size is normal. Lungs clear.",
    "Possible right basal pneumonia.",
]


def _reconciles(summary) -> None:
    c = summary.counts
    assert c.rows_in == c.rows_out + c.quarantined + c.skipped


def test_overlong_reports_are_quarantined_and_the_batch_goes_on(labeler, tmp_path):
    huge = {"X1": "No pneumothorax. " * 75_000, "X2": "Small effusion. " * 320_000}  # 1.25 M and 5.1 M characters
    assert all(len(t) > MAX_REPORT_CHARS for t in huge.values())
    ids = ["G0", "X1", "G1", "X2", "G2"]
    texts = [GOOD[0], huge["X1"], GOOD[1], huge["X2"], GOOD[2]]
    pq.write_table(pa.table({"exam_id": ids, "report_text": texts}), tmp_path / "in.parquet")
    out = tmp_path / "labels.parquet"
    summary = label_file(tmp_path / "in.parquet", out, progress=False, labeler=labeler)
    _reconciles(summary)
    assert (summary.counts.rows_in, summary.counts.rows_out, summary.counts.quarantined) == (5, 3, 2)
    labels = {r["exam_id"]: r for r in pq.read_table(out).to_pylist()}
    assert sorted(labels) == ["G0", "G1", "G2"] and labels["G0"]["pleural_effusion"] == 1
    quarantine = read_contract_table(quarantine_path_for(out), load_contract("quarantine")).to_pylist()
    assert {(q["record_id"], q["reason_code"]) for q in quarantine} == {
        ("X1", "report_too_long"),
        ("X2", "report_too_long"),
    }
    assert all("characters, more than the 500,000" in q["message"] for q in quarantine)


def test_csv_with_large_early_cells_is_read_whole(labeler, tmp_path):
    big = "FINDINGS: Small left pleural effusion. No pneumothorax. " * 4_500  # about 250 KB, in the first row
    path = tmp_path / "in.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["exam_id", "report_text"])
        writer.writerow(["BIG", big])
        for i, text in enumerate(GOOD * 4):
            writer.writerow([f"E{i}", text])
        writer.writerow(["EMPTY", ""])
    out = tmp_path / "labels.parquet"
    summary = label_file(path, out, progress=False, labeler=labeler)
    _reconciles(summary)
    assert (summary.counts.rows_out, summary.counts.quarantined) == (13, 1)
    labels = {r["exam_id"]: r for r in pq.read_table(out).to_pylist()}
    assert labels["BIG"]["pleural_effusion"] == 1 and labels["BIG"]["pneumothorax"] == 0
    assert summary.quarantined_by_reason == {"empty_report": 1}


def test_cli_into_a_closed_pipe_writes_its_files_and_exits_0(tmp_path):
    pq.write_table(pa.table({"exam_id": ["A", "B", "C"], "report_text": GOOD}), tmp_path / "in.parquet")
    out = tmp_path / "labels.parquet"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "radsim.flows.cli", "label", str(tmp_path / "in.parquet"), "--out", str(out),
            "--no-progress"]
    cli = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    head = subprocess.run(["head", "-1"], stdin=cli.stdout, capture_output=True, timeout=120)  # reads one line, exits
    cli.stdout.close()
    err = cli.stderr.read().decode()
    assert cli.wait(timeout=120) == 0, err
    assert head.stdout.decode().startswith("labelled 3 report(s)")
    assert "Traceback" not in err and "BrokenPipe" not in err
    assert pq.read_table(out).num_rows == 3


def test_cli_overlong_report_is_one_quarantine_line_not_a_traceback(tmp_path):
    pq.write_table(pa.table({"exam_id": ["A", "X"], "report_text": [GOOD[0], "No effusion. " * 100_000]}),
                   tmp_path / "in.parquet")
    proc = subprocess.run([sys.executable, "-m", "radsim.flows.cli", "label", str(tmp_path / "in.parquet"),
                           "--out", str(tmp_path / "labels.parquet"), "--no-progress"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "quarantined report_too_long: 1" in proc.stdout and "Traceback" not in proc.stderr
    assert "label: 2 in = 1 out + 1 quarantined + 0 skipped" in proc.stdout
