"""Labels written by --out extension: the contract (.parquet) or the CheXpert labeler's layout (.csv)."""
from __future__ import annotations

import csv

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from radsim.data_contracts import UsageError, load_contract
from radsim.nlp.naming import CHEXPERT, display_name, match_findings
from radsim.nlp.output import side_path
from radsim.nlp.runner import label_file

# the CheXpert labeler's output columns (its constants.CATEGORIES), in its order
CATEGORIES = ["No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Lesion", "Lung Opacity", "Edema",
              "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
              "Fracture", "Support Devices"]
REPORTS = {"A1": "Small left effusion. No pneumothorax. Possible right basal pneumonia.",
           "A2": "Heart size is normal. Lungs clear.", "A3": "", "A4": "ETT in satisfactory position."}


def _input(tmp_path):
    pq.write_table(pa.table({"exam_id": list(REPORTS), "report_text": list(REPORTS.values())}), tmp_path / "in.parquet")
    return tmp_path / "in.parquet"


def _csv(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_csv_out_is_the_chexpert_layout_with_evidence_and_quarantine_beside_it(labeler, tmp_path):
    out = tmp_path / "labels.csv"
    summary = label_file(_input(tmp_path), out, progress=False, labeler=labeler)
    with open(out, newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh))
    assert header[0] == "exam_id" and header[1:15] == CATEGORIES
    assert header[15:] == ["Emphysema", "Fibrosis", "Hiatus Hernia", "Other Abnormality"]
    rows = {r["exam_id"]: r for r in _csv(out)}
    assert sorted(rows) == ["A1", "A2", "A4"]
    a1 = rows["A1"]
    assert (a1["Pleural Effusion"], a1["Pneumothorax"], a1["Pneumonia"], a1["Fracture"]) == ("1", "0", "-1", "")
    assert a1["No Finding"] == "" and rows["A2"]["No Finding"] == "1"  # as CheXpert writes it: 1 or blank
    assert rows["A4"]["Support Devices"] == "1" and rows["A4"]["No Finding"] == "1"
    evidence = _csv(side_path(out, "evidence"))
    effusion = next(e for e in evidence if e["exam_id"] == "A1" and e["finding"] == "Pleural Effusion")
    assert (effusion["value"], effusion["status"], effusion["certainty"]) == ("1", "positive", "definite")
    assert effusion["sentence"] == "Small left effusion."
    pneumonia = next(e for e in evidence if e["exam_id"] == "A1" and e["finding"] == "Pneumonia")
    assert (pneumonia["status"], pneumonia["certainty"], pneumonia["trigger"]) == ("uncertain", "possible", "Possible")
    quarantine = _csv(tmp_path / "labels.quarantine.csv")
    assert [(q["record_id"], q["reason_code"]) for q in quarantine] == [("A3", "empty_report")]
    assert summary.evidence_path == tmp_path / "labels.evidence.csv"
    assert "wrote" in summary.lines()[-1] and "labels.evidence.csv" in summary.lines()[-1]


def test_csv_out_reads_in_pandas_as_chexpert_output_does(labeler, tmp_path):
    pd = pytest.importorskip("pandas")
    out = tmp_path / "labels.csv"
    label_file(_input(tmp_path), out, progress=False, labeler=labeler)
    df = pd.read_csv(out)
    assert df["Pleural Effusion"].tolist()[0] == 1.0 and pd.isna(df["Fracture"]).all()
    assert set(df[CATEGORIES].stack(future_stack=True).dropna().unique()) <= {1.0, 0.0, -1.0}


def test_parquet_out_stays_the_contract_and_other_names_are_refused(labeler, tmp_path):
    out = tmp_path / "labels.parquet"
    label_file(_input(tmp_path), out, progress=False, labeler=labeler)
    table = pq.read_table(out)
    load_contract("labels").validate(table)
    meta = table.schema.metadata
    assert meta[b"radsim.contract_version"] == b"1.1.0" and meta[b"radsim.labeler.certainty_threshold"] == b"consistent"
    assert (tmp_path / "labels.quarantine.parquet").exists() and not (tmp_path / "labels.evidence.csv").exists()
    with pytest.raises(UsageError, match="name the labels file .parquet .* or .csv"):
        label_file(_input(tmp_path), tmp_path / "labels.txt", progress=False, labeler=labeler)
    assert not (tmp_path / "labels.txt").exists()


def test_a_labels_file_written_before_the_certainty_field_is_still_read(tmp_path):
    old = pa.list_(pa.struct([(n, pa.string()) for n in ("finding", "status", "sentence", "trigger", "rule")]))
    contract = load_contract("labels")
    columns = {c.name: pa.nulls(1, c.type) for c in contract.columns}
    columns["exam_id"] = pa.array(["A"])
    columns["no_finding"] = pa.array([0], pa.int8())
    columns["positive_findings"] = pa.array([["pleural_effusion"]])
    columns["evidence"] = pa.array([[{"finding": "pleural_effusion", "status": "positive", "sentence": "s",
                                      "trigger": "t", "rule": "mention"}]], old)
    table = contract.validate(pa.table(columns))
    assert table.column("evidence").to_pylist()[0][0] == {"finding": "pleural_effusion", "status": "positive",
                                                          "sentence": "s", "trigger": "t", "rule": "mention",
                                                          "certainty": None}


def test_names_match_in_either_spelling():
    findings = ["no_finding", "lung_opacity", "pleural_effusion", "hiatus_hernia", "support_devices"]
    got = match_findings(["EXAM_ID", "No Finding", "Airspace Opacity", "pleural-effusion", "Hiatus Hernia",
                          "Support Devices", "Reports"], findings)
    assert got == {
        "No Finding": "no_finding",
        "Airspace Opacity": "lung_opacity",
        "pleural-effusion": "pleural_effusion",
        "Hiatus Hernia": "hiatus_hernia",
        "Support Devices": "support_devices",
    }
    assert all(display_name(f) == name for f, name in CHEXPERT.items())
