"""The site audit: export a stratified sample, fill in verdicts, score; and the scorer itself."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from radsim.data_contracts import NO_FINDING, UsageError, load_contract, rows_to_table
from radsim.nlp.agreement import GoldPair, score_agreement
from radsim.nlp.audit import export_audit, read_audit
from radsim.nlp.runner import label_file
from radsim.nlp.scoring import score_label_files

GOLD_DIR = Path(__file__).parent / "gold"
SCORED = ["cardiomegaly", "lung_lesion", "edema", "pneumonia", "atelectasis", "pneumothorax", "pleural_effusion",
          "other_abnormality"]  # in vocabulary order


def test_scorer_counts_precision_recall_f1_and_leaves_out_gold_uncertain():
    pairs = [GoldPair("a", "x", 1, 1), GoldPair("b", "x", 1, None), GoldPair("c", "x", None, 1),
             GoldPair("d", "x", 0, 0), GoldPair("e", "x", -1, 1),  # gold uncertain: left out
             GoldPair("a", "y", 1, 1), GoldPair("b", "y", 0, -1)]  # predicted uncertain is not present
    report = score_agreement(pairs, ["x", "y"], bootstrap=200, seed=1)
    x = report.per_finding["x"]
    assert (x["precision"].value, x["recall"].value, x["f1"].value) == (0.5, 0.5, 0.5)
    assert report.per_finding["y"]["f1"].value == 1.0
    assert report.macro["f1"].value == pytest.approx(0.75)
    assert report.micro["precision"].value == pytest.approx(2 / 3) and report.micro["recall"].value == pytest.approx(
        2 / 3
    )
    assert x["precision"].low <= 0.5 <= x["precision"].high
    assert report.confusion["uncertain"]["present"] == 1 and report.confusion["negated"]["uncertain"] == 1
    counted = score_agreement(pairs, ["x"], uncertain="positive", bootstrap=10).per_finding["x"]
    assert counted["precision"].value == pytest.approx(2 / 3)


def test_scorer_interval_narrows_with_more_exams():
    rng = np.random.default_rng(0)

    def width(n: int) -> float:
        pairs = [GoldPair(str(i), "x", int(rng.random() < 0.3), int(rng.random() < 0.3)) for i in range(n)]
        f1 = score_agreement(pairs, ["x"], bootstrap=300).per_finding["x"]["f1"]
        return f1.high - f1.low

    assert width(2000) < width(100)


def _gold_cases() -> list[dict]:
    return [c for p in sorted(GOLD_DIR.glob("*.yaml")) for c in yaml.safe_load(p.read_text(encoding="utf-8"))]


def _write_corpus(tmp_path: Path) -> tuple[Path, Path, list[dict]]:
    cases = _gold_cases()
    reports = tmp_path / "reports.csv"
    with open(reports, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["exam_id", "report_text"])
        for i, c in enumerate(cases):
            w.writerow([f"G{i:04d}", c["t"]])
    gold_rows = [{"exam_id": f"G{i:04d}", **{f: c["e"].get(f) for f in SCORED}} for i, c in enumerate(cases)]
    gold = tmp_path / "gold.csv"
    with open(gold, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["exam_id", *SCORED])
        w.writeheader()
        w.writerows([{k: ("" if v is None else v) for k, v in r.items()} for r in gold_rows])
    return reports, gold, gold_rows


def test_gold_set_scores_perfectly_through_label_score(labeler, tmp_path):
    reports, gold, _ = _write_corpus(tmp_path)
    label_file(reports, tmp_path / "labels.parquet", progress=False, labeler=labeler)
    report, paths = score_label_files(tmp_path / "labels.parquet", gold, tmp_path / "score", bootstrap=100)
    assert [p.name for p in paths] == ["agreement.json", "agreement.md"]
    assert report.findings == SCORED  # the findings both tables hold, in vocabulary order
    for f in SCORED:
        assert report.per_finding[f]["f1"].value == 1.0, f
    doc = json.loads(paths[0].read_text())
    assert doc["macro"]["f1"]["value"] == 1.0 and doc["n_exams"] == len(_gold_cases())
    assert "| pleural_effusion | 1.000 [1.000, 1.000]" in paths[1].read_text()


def _corrupt(labels: Path, seed: int) -> None:
    """Make the labels wrong in places, so agreement is not trivially perfect."""
    table = pq.read_table(labels)
    rows = table.to_pylist()
    rng = np.random.default_rng(seed)
    for r in rows:
        for f in SCORED:
            u = rng.random()
            if r[f] == 1 and u < 0.15:
                r[f] = None
            elif r[f] is None and u < 0.03:
                r[f] = 1
        r["positive_findings"] = [
            f for f in r if f not in ("exam_id", "positive_findings", "evidence", "labeler_version") and r[f] == 1
        ]
    contract = load_contract("labels")
    corrupted = contract.validate(rows_to_table(contract, rows))
    pq.write_table(corrupted.replace_schema_metadata(table.schema.metadata), labels)


def _rewrite(audit: Path, rows: list[dict]) -> None:
    with open(audit, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _read(audit: Path) -> list[dict]:
    with open(audit, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _fill(audit: Path, truth: dict[str, dict]) -> None:
    """A reviewer who knows the truth: 'correct', or the wrong values listed in 'corrections'."""
    rows = _read(audit)
    for row in rows:
        wrong = []
        for part in row["to_judge"].split(";"):
            finding, _, value = part.strip().partition("=")
            have = None if value == "" else int(value)
            want = truth[row["exam_id"]].get(finding)
            if want != have:
                wrong.append(f"{finding}={'' if want is None else want}")
        row["verdict"] = "wrong" if wrong else "correct"
        row["corrections"] = "; ".join(wrong)
    _rewrite(audit, rows)


def test_audit_round_trip_export_fill_score_matches_the_full_gold(labeler, tmp_path):
    reports, gold, gold_rows = _write_corpus(tmp_path)
    labels = tmp_path / "labels.parquet"
    label_file(reports, labels, progress=False, labeler=labeler)
    _corrupt(labels, seed=3)
    direct, _ = score_label_files(labels, gold, tmp_path / "direct", findings=SCORED, bootstrap=50)
    assert direct.macro["f1"].value < 0.97  # the corruption shows

    audit = tmp_path / "audit.csv"  # every pair sampled: the audit must reproduce the direct score exactly
    summary = export_audit(labels, audit, per_stratum=10**6, reports_input=reports, findings=SCORED)
    assert summary.rows == len(gold_rows) and summary.pairs == len(gold_rows) * len(SCORED)
    first = _read(audit)[0]
    assert first["verdict"] == "" and first["report_text"] and first["strata"].startswith("cardiomegaly:")
    assert len(first["to_judge"].split(";")) == len(SCORED)  # one row per report, all its strata together
    truth = {r["exam_id"]: r for r in gold_rows}
    _fill(audit, truth)
    audited, _ = score_label_files(labels, audit, tmp_path / "audited", bootstrap=50)
    for f in SCORED:
        for metric in ("precision", "recall", "f1"):
            a, d = audited.per_finding[f][metric], direct.per_finding[f][metric]
            assert (math.isnan(a.value) and math.isnan(d.value)) or a.value == pytest.approx(d.value), (f, metric)
            # every stratum judged whole: a census, shown as exact rather than as a zero-width interval
            assert math.isnan(a.value) or (a.exact and "(exact)" in a.text() and "[" not in a.text())
    assert not direct.per_finding["pleural_effusion"]["f1"].exact  # a gold table is a sample of reports


def test_sampled_audit_weights_rows_by_stratum_and_refuses_bad_verdicts(labeler, tmp_path):
    reports, _, gold_rows = _write_corpus(tmp_path)
    labels = tmp_path / "labels.parquet"
    label_file(reports, labels, progress=False, labeler=labeler)
    _corrupt(labels, seed=5)
    audit = tmp_path / "audit.csv"
    summary = export_audit(labels, audit, per_stratum=8, seed=2, reports_input=reports)
    assert all(sampled == min(8, size) for size, sampled in summary.strata.values())
    assert f"{NO_FINDING}:present" in summary.strata
    rows = _read(audit)
    assert len(rows) == summary.rows == len({r["exam_id"] for r in rows})  # each report once
    assert summary.pairs == sum(sampled for _, sampled in summary.strata.values()) > summary.rows
    _fill(audit, {r["exam_id"]: r for r in gold_rows})
    pairs, tally = read_audit(audit)
    assert tally["correct"] + tally["wrong"] == summary.rows and len(pairs) == summary.pairs
    by_stratum: dict[str, float] = {}
    for p in pairs:
        by_stratum[p.stratum] = by_stratum.get(p.stratum, 0.0) + p.weight
    for name, (size, _) in summary.strata.items():
        assert by_stratum[name] == pytest.approx(size)  # each stratum stands for all its exams
    report, _ = score_label_files(labels, audit, tmp_path / "score", bootstrap=100)
    effusion = report.per_finding["pleural_effusion"]["precision"]
    assert effusion.low <= effusion.value <= effusion.high

    rows = _read(audit)
    rows[0]["verdict"] = "perhaps"
    _rewrite(audit, rows)
    with pytest.raises(UsageError, match="is not correct, wrong or unsure"):
        read_audit(audit)
    rows[0]["verdict"], rows[0]["corrections"] = "wrong", "fracture=1"
    if "fracture=" not in rows[0]["to_judge"]:
        _rewrite(audit, rows)
        with pytest.raises(UsageError, match="is not one of the values to judge"):
            read_audit(audit)


def test_unsure_values_are_left_out_and_a_stratum_with_one_left_out_is_not_exact(labeler, tmp_path):
    reports, _, gold_rows = _write_corpus(tmp_path)
    labels = tmp_path / "labels.parquet"
    label_file(reports, labels, progress=False, labeler=labeler)
    audit = tmp_path / "audit.csv"
    export_audit(labels, audit, per_stratum=10**6, findings=["pleural_effusion"])
    _fill(audit, {r["exam_id"]: r for r in gold_rows})
    rows = _read(audit)
    rows[0]["unsure"] = "pleural_effusion"
    _rewrite(audit, rows)
    pairs, _ = read_audit(audit)
    assert len(pairs) == len(rows) - 1
    left_out = next(p.stratum for p in pairs if p.stratum == rows[0]["strata"].split(" (")[0])
    assert not any(p.complete for p in pairs if p.stratum == left_out)
    assert all(p.complete for p in pairs if p.stratum != left_out)


def test_an_audit_written_one_row_per_value_is_still_read(tmp_path):
    audit = tmp_path / "old.csv"
    header = ["audit_id", "stratum", "stratum_size", "sampled", "exam_id", "finding", "predicted_value",
              "predicted_status", "sentence", "trigger", "rule", "report_text", "verdict", "true_value", "notes"]
    rows = [["1", "pleural_effusion:present", "4", "2", "A", "pleural_effusion", "1", "positive", "", "", "", "",
             "correct", "", ""],
            ["2", "pleural_effusion:present", "4", "2", "B", "pleural_effusion", "1", "positive", "", "", "", "",
             "wrong", "", ""]]
    with open(audit, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, *rows])
    pairs, tally = read_audit(audit)
    assert tally == {"correct": 1, "wrong": 1, "unsure": 0}
    assert [(p.exam_id, p.gold, p.predicted, p.weight) for p in pairs] == [("A", 1, 1, 2.0), ("B", None, 1, 2.0)]


def test_audit_of_other_labels_is_refused(labeler, tmp_path):
    reports, _, gold_rows = _write_corpus(tmp_path)
    labels = tmp_path / "labels.parquet"
    label_file(reports, labels, progress=False, labeler=labeler)
    audit = tmp_path / "audit.csv"
    export_audit(labels, audit, per_stratum=3, findings=["pleural_effusion"])
    _fill(audit, {r["exam_id"]: r for r in gold_rows})
    first = _read(audit)[0]
    table = pq.read_table(labels)  # the labels change after the export: one audited value flips
    rows = table.to_pylist()
    row = next(r for r in rows if r["exam_id"] == first["exam_id"])
    row["pleural_effusion"] = None if row["pleural_effusion"] == 1 else 1
    contract = load_contract("labels")
    pq.write_table(
        contract.validate(rows_to_table(contract, rows)).replace_schema_metadata(table.schema.metadata), labels
    )
    with pytest.raises(UsageError, match="score the labels table the audit was exported from"):
        score_label_files(labels, audit, tmp_path / "score", bootstrap=10)


def test_label_score_reads_chexpert_names_in_gold_and_labels_and_says_what_it_matched(labeler, tmp_path):
    from radsim.nlp.naming import display_name

    reports, _, gold_rows = _write_corpus(tmp_path)
    labels = tmp_path / "labels.parquet"
    label_file(reports, labels, progress=False, labeler=labeler)
    gold = tmp_path / "chexpert_gold.csv"  # CheXpert's names, an extra column, upper-case id, float values
    with open(gold, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["EXAM_ID", "Reports", *(display_name(f) for f in SCORED)])
        for r in gold_rows:
            w.writerow([r["exam_id"], "text", *("" if r[f] is None else f"{float(r[f]):.1f}" for f in SCORED)])
    report, _ = score_label_files(labels, gold, tmp_path / "score", bootstrap=20)
    assert report.findings == SCORED and report.macro["f1"].value == 1.0
    note = next(n for n in report.notes if n.startswith("gold chexpert_gold.csv"))
    assert "'Pleural Effusion' → pleural_effusion" in note and "'Reports'" in note
    label_file(reports, tmp_path / "labels.csv", progress=False, labeler=labeler)  # labels in CheXpert layout too
    both, _ = score_label_files(tmp_path / "labels.csv", gold, tmp_path / "score2", bootstrap=20)
    assert both.macro["f1"].value == 1.0
    bad = tmp_path / "bad.csv"
    bad.write_text("exam_id,Pleural Thing\nA,1\n")
    with pytest.raises(UsageError, match="shares no finding.*CheXpert labeler"):
        score_label_files(labels, bad, tmp_path / "score3", bootstrap=5)
