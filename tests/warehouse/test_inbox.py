"""Inbox scanning and the ledger: exam folders (nested batches too) → validated exams; hashes decide re-runs."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from radsim.data_contracts import UsageError, demo_keyer
from radsim.warehouse.inbox import ingest_inbox, scan_inbox
from radsim.warehouse.ledger import (
    diff,
    fingerprints,
    read_ledger,
    update_ledger,
    write_ledger,
)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from radsim.synthetic import generate_cohort

    return generate_cohort(tmp_path_factory.mktemp("c") / "c", exams=6, seed=5, image_size=64, bad=True, progress=False)


def _png(path):
    Image.fromarray((np.random.default_rng(0).random((64, 64)) * 255).astype("uint8")).save(path)


def test_mixed_inbox_keeps_good_exams_and_quarantines_bad_ones(cohort, tmp_path):
    inbox = tmp_path / "inbox"
    shutil.copytree(cohort.inbox, inbox)
    (inbox / "NOIMG1").mkdir()
    (inbox / "NOIMG1" / "report.txt").write_text("No acute abnormality.")
    (inbox / "PNG1").mkdir()
    _png(inbox / "PNG1" / "0.png")
    (inbox / "PNG1" / "report.txt").write_text("Normal chest.")
    (inbox / "PNG1" / "exam.json").write_text(json.dumps({"patient_id": "P-PNG", "study_date": "2024-05-01",
                                                          "view_position": "PA"}))
    (inbox / "NOPATIENT").mkdir()
    _png(inbox / "NOPATIENT" / "0.png")  # a PNG without exam.json has no patient id
    (inbox / "BADJSON").mkdir()
    _png(inbox / "BADJSON" / "0.png")
    (inbox / "BADJSON" / "exam.json").write_text("{nope")

    result = ingest_inbox(inbox)
    c = result.counts
    assert c.rows_in == c.rows_out + c.quarantined + c.skipped
    reasons = {r.record_id.split("/")[0].split(" ")[0]: r.reason_code for r in result.quarantine}
    assert reasons["NOIMG1"] == "missing_file"
    assert reasons["NOPATIENT"] == "schema_violation"
    assert reasons["BADJSON"] == "schema_violation"
    assert "duplicate_id" in reasons.values()  # the re-sent copy under inbox/resent/
    rows = result.exams.to_pylist()
    png = [r for r in rows if r["exam_id"] == "PNG1"]
    assert png and png[0]["patient_id"] == "P-PNG" and png[0]["view_position"] == "PA"
    assert str(png[0]["study_date"]) == "2024-05-01"
    good = {p.name for p in cohort.inbox.iterdir() if p.is_dir() and p.name != "resent"}
    assert good <= {r["exam_id"] for r in rows}  # the corrupt and non-chest exams pass ingest; shard refuses them
    dicom_row = next(r for r in rows if r["exam_id"] in good)
    assert dicom_row["patient_id"] and dicom_row["report_text"]  # from the DICOM header and report.txt


def test_missing_inbox_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        scan_inbox(tmp_path / "nope")


def test_manifest_works_as_inbox(cohort):
    result = ingest_inbox(cohort.exams_path)
    assert result.exams.num_rows == result.counts.rows_out > 0


def test_ledger_finds_new_amended_and_unchanged_exams(cohort, tmp_path):
    inbox = tmp_path / "inbox"
    shutil.copytree(cohort.inbox, inbox, ignore=shutil.ignore_patterns("resent"))
    exams = ingest_inbox(inbox).exams
    prints = fingerprints(exams)
    keyer = demo_keyer()
    first = diff(read_ledger(tmp_path / "wh"), prints)
    assert sorted(first.new) == sorted(prints) and first.unchanged == []
    ledger = update_ledger(read_ledger(tmp_path / "wh"), prints, keyer, label_status={e: "done" for e in prints},
                           shard_status={e: "done" for e in prints}, published_version="v1", published=list(prints))
    write_ledger(ledger, tmp_path / "wh")
    again = diff(read_ledger(tmp_path / "wh"), prints)
    assert again.nothing_new and sorted(again.unchanged) == sorted(prints)

    amended = sorted(prints)[0]
    (inbox / amended / "report.txt").write_text("FINDINGS: small left pleural effusion.")
    later = diff(read_ledger(tmp_path / "wh"), fingerprints(ingest_inbox(inbox).exams))
    assert later.report_changed == [amended] and later.to_label == [amended] and later.to_shard == []
    row = next(r for r in read_ledger(tmp_path / "wh").to_pylist() if r["exam_id"] == amended)
    assert row["exam_key"] == keyer.exam_key(amended) and row["published_version"] == "v1"
