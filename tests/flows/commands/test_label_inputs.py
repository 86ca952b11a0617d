"""The seven input-file cases of issue 22, through `radsim label` / `radsim label-score` as a user runs them."""
from __future__ import annotations

import csv

import pyarrow.parquet as pq

from radsim.flows.cli import main

TEXTS = [
    "No pneumothorax. Small left effusion.",
    "Heart size is normal. Lungs clear.",
    "Possible right basal pneumonia.",
]


def _labels(path) -> dict[str, dict]:
    return {r["exam_id"]: r for r in pq.read_table(path).to_pylist()}


def _quarantine(path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def test_an_unclosed_quote_quarantines_one_record_and_labels_every_other(tmp_path, capsys):
    lines = ["exam_id,report_text"]
    for i in range(2000):
        text = TEXTS[i % 3]
        lines.append(f'E{i:04d},"{text}"' if i % 2 else f"E{i:04d},{text}")
    lines[8] = 'E0007,"Heart size is normal with a quote that never closes'  # file line 9
    src = tmp_path / "reports.csv"
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "labels.parquet"
    assert main(["label", str(src), "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "label: 2000 in = 1999 out + 1 quarantined + 0 skipped" in text and "malformed_record: 1" in text
    labels = _labels(out)
    assert len(labels) == 1999 and "E0007" not in labels
    for i in (6, 8, 9, 1999):  # the neighbours keep their own labels, nothing merged
        want = TEXTS[i % 3]
        assert labels[f"E{i:04d}"]["pleural_effusion"] == (1 if want == TEXTS[0] else None)
        assert labels[f"E{i:04d}"]["pneumonia"] == (-1 if want == TEXTS[2] else None)
    (q,) = _quarantine(tmp_path / "labels.quarantine.parquet")
    assert (q["record_id"], q["reason_code"]) == ("line 9", "malformed_record")
    assert q["message"].startswith("line 9: a quoted field opens here")


def test_tsv_input(tmp_path, capsys):
    src = tmp_path / "reports.tsv"
    src.write_text("exam_id\treport_text\nA1\tSmall left effusion, no pneumothorax.\nA2\tNormal.\n")
    assert main(["label", str(src), "--out", str(tmp_path / "l.parquet"), "--no-progress"]) == 0
    labels = _labels(tmp_path / "l.parquet")
    assert labels["A1"]["pleural_effusion"] == 1 and labels["A1"]["pneumothorax"] == 0 and len(labels) == 2


def test_semicolon_delimiter(tmp_path, capsys):
    src = tmp_path / "reports.csv"
    src.write_text('exam_id;report_text\nA1;"No effusion; small right pneumothorax."\nA2;Cardiomegaly.\n')
    assert main(["label", str(src), "--out", str(tmp_path / "l.parquet"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--delimiter ';'" in err and len(err.strip().splitlines()) == 1
    assert main(["label", str(src), "--out", str(tmp_path / "l.parquet"), "--no-progress", "--delimiter", ";"]) == 0
    labels = _labels(tmp_path / "l.parquet")
    assert labels["A1"]["pneumothorax"] == 1 and labels["A1"]["pleural_effusion"] == 0
    assert labels["A2"]["cardiomegaly"] == 1


def test_upper_case_headers_and_mapped_columns(tmp_path, capsys):
    src = tmp_path / "reports.csv"
    src.write_text("EXAM_ID,REPORT_TEXT\nA1,Small left effusion.\n")
    assert main(["label", str(src), "--out", str(tmp_path / "l.parquet"), "--no-progress"]) == 0
    assert _labels(tmp_path / "l.parquet")["A1"]["pleural_effusion"] == 1
    other = tmp_path / "other.csv"
    other.write_text("Accession,Impression\nX1,No pneumothorax.\n")
    assert main(["label", str(other), "--out", str(tmp_path / "m.parquet"), "--no-progress", "--id-column",
                 "accession", "--text-column", "impression"]) == 0
    assert _labels(tmp_path / "m.parquet")["X1"]["pneumothorax"] == 0


def test_out_csv_writes_the_chexpert_layout_not_parquet(tmp_path, capsys):
    src = tmp_path / "reports.csv"
    src.write_text("exam_id,report_text\nA1,Small left effusion.\nA2,\n")
    out = tmp_path / "labels.csv"
    assert main(["label", str(src), "--out", str(out), "--no-progress"]) == 0
    assert not out.read_bytes().startswith(b"PAR1")
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert rows == [{**{k: "" for k in rows[0]}, "exam_id": "A1", "Pleural Effusion": "1"}]
    assert (tmp_path / "labels.evidence.csv").exists() and (tmp_path / "labels.quarantine.csv").exists()
    printed = capsys.readouterr().out
    assert "wrote " + str(out) in printed and "labels.evidence.csv" in printed


def test_a_line_that_is_not_json_is_quarantined_as_such(tmp_path, capsys):
    src = tmp_path / "reports.jsonl"
    src.write_text(
        '{"exam_id": "J1", "report_text": "Small effusion."}\n{oops\n{"exam_id": "J3", "report_text": "Normal."}\n'
    )
    assert main(["label", str(src), "--out", str(tmp_path / "l.parquet"), "--no-progress"]) == 0
    assert "label: 3 in = 2 out + 1 quarantined + 0 skipped" in capsys.readouterr().out
    (q,) = _quarantine(tmp_path / "l.quarantine.parquet")
    assert q["reason_code"] == "malformed_record" and "line 2 is not JSON" in q["message"]
    assert "exam_id" not in q["message"]


def test_label_score_with_a_chexpert_named_gold(tmp_path, capsys):
    src = tmp_path / "reports.csv"
    src.write_text("exam_id,report_text\nA1,Small left effusion. No pneumothorax.\nA2,Right pneumothorax.\n"
                   "A3,Cardiomegaly.\n")
    assert main(["label", str(src), "--out", str(tmp_path / "l.parquet"), "--no-progress"]) == 0
    gold = tmp_path / "gold.csv"
    gold.write_text("Exam_ID,No Finding,Pleural Effusion,Pneumothorax,Cardiomegaly\nA1,,1.0,0.0,\nA2,,,1.0,\n"
                    "A3,,,,1.0\n")
    capsys.readouterr()
    assert main(["label-score", str(tmp_path / "l.parquet"), "--gold", str(gold), "--out", str(tmp_path / "s"),
                 "--bootstrap", "20"]) == 0
    out = capsys.readouterr().out
    assert "'Pleural Effusion' → pleural_effusion" in out and "'No Finding' → no_finding" in out
    assert "pleural_effusion" in out and "macro" in out


def test_empty_inputs_behave_alike(tmp_path, capsys):
    (tmp_path / "h.csv").write_text("exam_id,report_text\n")
    (tmp_path / "e.jsonl").write_text("")
    (tmp_path / "z.tsv").write_text("")
    (tmp_path / "d").mkdir()
    for src in ("h.csv", "e.jsonl", "z.tsv", "d"):
        assert main(["label", str(tmp_path / src), "--out", str(tmp_path / f"{src}.parquet"), "--no-progress"]) == 0
        out = capsys.readouterr().out
        assert "holds no reports" in out and "label: 0 in = 0 out" in out, src
