"""Sharding: round trip, quarantine reasons, determinism, incremental runs, crash safety, privacy."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from radsim.data_contracts import IdKeyer, UsageError, default_vocabulary, demo_keyer, load_contract, rows_to_table
from radsim.imaging import shard_commit
from radsim.imaging import shards as sh
from radsim.imaging.decode import read_image
from radsim.imaging.normalise import decode_png, square_image
from radsim.imaging.splits import hash_split
from radsim.imaging.tarshard import ShardTarWriter, iter_tar_samples

VOCAB = default_vocabulary()
SIZE = 32


def labels_table(values: dict[str, dict[str, int | None]]) -> pa.Table:
    contract = load_contract("labels", VOCAB)
    rows = []
    for exam_id, findings in values.items():
        row = {"exam_id": exam_id, **{n: findings.get(n) for n in VOCAB.names}}
        row["no_finding"] = findings.get("no_finding", 0)
        row["positive_findings"] = [n for n in VOCAB.names if row[n] == 1]
        rows.append(row)
    return contract.validate(rows_to_table(contract, rows))


def write_exams_csv(path: Path, rows: list[dict]) -> Path:
    cols = ["exam_id", "patient_id", "image_uri", "image_index"]
    pacsv.write_csv(pa.table({c: [str(r.get(c, 0)) for r in rows] for c in cols}), path)
    return path


@pytest.fixture
def cohort(tmp_path, make_dicom, make_png):
    """6 images of 5 exams (one with a lateral), 4 patients; labels for 3 exams; exams CSV with relative paths."""
    src = tmp_path / "inbox"
    rows = []
    for i in range(5):
        exam_id, patient_id = f"EXAM-{1000 + i}", f"PAT-{i % 4}"
        rel = f"img/{exam_id}_0.dcm"
        make_dicom(src / rel, seed=i, photometric="MONOCHROME1" if i % 2 else "MONOCHROME2",
                   phi={"AccessionNumber": f"ACC{555000 + i}"})
        rows.append({"exam_id": exam_id, "patient_id": patient_id, "image_uri": rel, "image_index": 0})
    make_dicom(src / "img/EXAM-1000_1.dcm", seed=9, view="LATERAL")
    rows.append({"exam_id": "EXAM-1000", "patient_id": "PAT-0", "image_uri": "img/EXAM-1000_1.dcm", "image_index": 1})
    labels = labels_table({
        "EXAM-1000": {"cardiomegaly": 1, "edema": -1},
        "EXAM-1001": {"no_finding": 1},
        "EXAM-1002": {"pleural_effusion": 1, "pneumothorax": 0},
    })
    pq.write_table(labels, src / "labels.parquet")
    return {
        "dir": src,
        "rows": rows,
        "exams": write_exams_csv(src / "exams.csv", rows),
        "labels": src / "labels.parquet",
    }


def run(cohort, out, **kw):
    kw.setdefault("keyer", demo_keyer())
    kw.setdefault("image_size", SIZE)
    kw.setdefault("progress", False)
    return sh.write_shards(kw.pop("exams", cohort["exams"]), kw.pop("labels", cohort["labels"]), out, **kw)


def shard_samples(out: Path) -> dict[str, dict]:
    samples = {}
    for tar in sorted(out.glob("shard-*.tar")):
        for s in iter_tar_samples(tar):
            assert s["__key__"] not in samples, "duplicate sample across shards"
            samples[s["__key__"]] = {**s, "shard": tar.name}
    return samples


def assert_consistent(out: Path) -> pa.Table:
    """The manifest lists exactly the samples on disk, each in the shard it names."""
    manifest = pq.read_table(out / sh.MANIFEST_FILE)
    samples = shard_samples(out)
    keys = manifest.column("sample_key").to_pylist()
    assert len(keys) == len(set(keys))
    assert set(keys) == set(samples)
    for row in manifest.to_pylist():
        assert samples[row["sample_key"]]["shard"] == row["shard"]
    assert not list(out.glob(".*.tmp"))
    return manifest


def test_round_trip_images_and_labels(cohort, tmp_path):
    out = tmp_path / "shards"
    summary = run(cohort, out, maxcount=4)
    assert (summary.counts.rows_in, summary.counts.rows_out, summary.counts.quarantined) == (6, 6, 0)
    assert summary.shards_written == ["shard-000000.tar", "shard-000001.tar"]
    manifest = assert_consistent(out)
    keyer = demo_keyer()
    samples = shard_samples(out)
    by_key = {r["sample_key"]: r for r in manifest.to_pylist()}
    for r in cohort["rows"]:
        key = f"{keyer.exam_key(r['exam_id'])}_{r['image_index']}"
        s = samples[key]
        expected = square_image(read_image(cohort["dir"] / r["image_uri"]).pixels, SIZE)
        np.testing.assert_array_equal(decode_png(s["png"]), expected)
        doc = json.loads(s["json"])
        assert set(doc) == {"labels", "labelled", "split", "view_position"}
        assert len(doc["labels"]) == len(VOCAB)
        assert doc["split"] == by_key[key]["split"]
        assert doc["labelled"] == by_key[key]["labelled"]
        assert doc["view_position"] == by_key[key]["view_position"]
    k0 = f"{keyer.exam_key('EXAM-1000')}_0"
    doc = json.loads(samples[k0]["json"])
    assert doc["labels"][VOCAB.index("cardiomegaly")] == 1 and doc["labels"][VOCAB.index("edema")] == -1
    assert doc["labels"][VOCAB.index("fracture")] is None and doc["labelled"] is True
    assert json.loads(samples[f"{keyer.exam_key('EXAM-1000')}_1"]["json"])["view_position"] == "LATERAL"
    unlabelled = json.loads(samples[f"{keyer.exam_key('EXAM-1004')}_0"]["json"])
    assert unlabelled["labelled"] is False and unlabelled["labels"] == [None] * len(VOCAB)
    meta = {k.decode(): v.decode() for k, v in manifest.schema.metadata.items()}
    assert meta["radsim.key_id"] == keyer.key_id and meta["radsim.image_size"] == str(SIZE)
    assert json.loads(meta["radsim.vocabulary.findings"]) == list(VOCAB.names)


def test_bad_inputs_quarantined_and_counts_reconcile(cohort, tmp_path, make_dicom, make_png_bomb, shared_dicom_dir):
    d = cohort["dir"]
    good = (d / cohort["rows"][0]["image_uri"]).read_bytes()
    (d / "bad").mkdir()
    (d / "bad/zero.dcm").write_bytes(b"")
    (d / "bad/trunc.dcm").write_bytes(good[:-1500])
    (d / "bad/report.txt").write_text("FINDINGS: normal\n")
    (d / "bad/folder.dcm").mkdir()
    make_dicom(d / "bad/ct.dcm", modality="CT")
    make_dicom(d / "bad/mr.dcm", modality="MR")
    make_dicom(d / "bad/rt.dcm", modality="RTSTRUCT", pixel_data=False)
    make_dicom(d / "bad/nopix.dcm", pixel_data=False)
    make_dicom(d / "bad/burn.dcm", burned_in="YES")
    make_dicom(d / "bad/bomb.dcm", rows=50000, columns=50000)
    make_png_bomb(d / "bad/bomb.png")
    bad = {
        "zero.dcm": "unreadable_image", "trunc.dcm": "unreadable_image", "report.txt": "not_dicom",
        "folder.dcm": "missing_file", "gone.dcm": "missing_file", "ct.dcm": "not_radiograph",
        "mr.dcm": "not_radiograph", "rt.dcm": "not_radiograph", "nopix.dcm": "no_pixel_data",
        "burn.dcm": "burned_in_annotation", "bomb.dcm": "implausible_size", "bomb.png": "implausible_size",
    }
    rows = list(cohort["rows"])
    rows += [{"exam_id": f"BAD-{n}", "patient_id": "PAT-9", "image_uri": f"bad/{n}"} for n in bad]
    rows.append({"exam_id": "HIP-1", "patient_id": "PAT-8", "image_uri": str(shared_dicom_dir / "RG2_JPLL.dcm")})
    rows.append(dict(cohort["rows"][1]))  # duplicate (exam_id, image_index)
    rows.append({**cohort["rows"][2], "patient_id": "PAT-OTHER", "image_index": 3})  # exam id under another patient
    exams = write_exams_csv(d / "exams_bad.csv", rows)

    summary = run(cohort, tmp_path / "shards", exams=exams)
    c = summary.counts
    assert c.rows_in == len(rows) and c.rows_out == 6 and c.skipped == 0
    assert c.quarantined == len(bad) + 3
    assert c.rows_in == c.rows_out + c.quarantined + c.skipped
    assert not (tmp_path / "shards" / sh.LEGACY_QUARANTINE_FILE).exists()  # the quarantine is restricted
    q = pq.read_table(sh.default_quarantine_path(tmp_path / "shards")).to_pylist()
    assert len(q) == c.quarantined
    got = {r["record_id"].split("/")[0]: r["reason_code"] for r in q}
    for n, code in bad.items():
        assert got[f"BAD-{n}"] == code, n
    assert got["HIP-1"] == "not_chest"
    dups = [r for r in q if r["reason_code"] == "duplicate_id"]
    assert {r["record_id"].split("/")[0] for r in dups} == {"EXAM-1001", "EXAM-1002"}
    assert all(r["stage"] == "shard" for r in q)
    assert summary.quarantine_reasons["duplicate_id"] == 2
    assert_consistent(tmp_path / "shards")


def test_rerun_is_byte_identical(cohort, tmp_path):
    run(cohort, tmp_path / "a", maxcount=4)
    run(cohort, tmp_path / "b", maxcount=4, workers=2, batch_size=2)
    names = sorted(p.name for p in (tmp_path / "a").glob("*.tar"))
    assert names == sorted(p.name for p in (tmp_path / "b").glob("*.tar")) and names
    for name in names + [sh.MANIFEST_FILE, "splits.parquet"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_incremental_second_run_writes_nothing_and_new_exams_go_to_new_shard(cohort, tmp_path, make_dicom):
    out = tmp_path / "shards"
    first = run(cohort, out)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    second = run(cohort, out)
    assert second.wrote_nothing and second.counts.rows_out == 0 and second.counts.skipped == 6
    assert "nothing new" in second.summary()
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before

    make_dicom(cohort["dir"] / "img/NEW.dcm", seed=42)
    rows = cohort["rows"] + [{"exam_id": "EXAM-2000", "patient_id": "PAT-NEW", "image_uri": "img/NEW.dcm"}]
    third = run(cohort, out, exams=write_exams_csv(cohort["dir"] / "exams2.csv", rows))
    assert (third.counts.rows_out, third.counts.skipped) == (1, 6)
    assert third.shards_written == ["shard-000001.tar"] and first.shards_written == ["shard-000000.tar"]
    assert (out / "shard-000000.tar").stat().st_mtime_ns == before["shard-000000.tar"]
    manifest = assert_consistent(out)
    assert manifest.num_rows == 7


def test_skip_survives_lost_source_digests_and_changed_image_is_quarantined(cohort, tmp_path, make_dicom):
    out = tmp_path / "shards"
    run(cohort, out)
    (out / sh.SOURCES_FILE).unlink()  # fall back to comparing the stored PNG hash
    again = run(cohort, out)
    assert again.counts.skipped == 6 and again.wrote_nothing
    make_dicom(cohort["dir"] / cohort["rows"][3]["image_uri"], seed=77)  # same exam, new pixels
    changed = run(cohort, out)
    assert changed.counts.quarantined == 1 and changed.quarantine_reasons == {"duplicate_id": 1}
    assert changed.wrote_nothing
    assert_consistent(out)


def _count_listings(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = shard_commit._append_manifest

    def counted(plan, rows):
        calls.append(len(rows))
        return real(plan, rows)

    monkeypatch.setattr(shard_commit, "_append_manifest", counted)
    return calls


def test_closed_shards_are_listed_in_batches_once_the_manifest_dwarfs_them(cohort, tmp_path, monkeypatch):
    """The manifest is rewritten when the waiting rows reach a share of the listed ones, not per shard (issue 24)."""
    monkeypatch.setattr(shard_commit, "COMMIT_FRACTION", 1.0)
    monkeypatch.setattr(shard_commit, "COMMIT_SECONDS", 3600.0)
    calls = _count_listings(monkeypatch)
    summary = run(cohort, tmp_path / "shards", maxcount=1)
    assert calls == [1, 1, 2, 2]  # listed rows 0, 1, 2 (one waits), 4 (two wait), then the end of the run
    assert len(summary.shards_written) == 6 and assert_consistent(tmp_path / "shards").num_rows == 6
    monkeypatch.setattr(shard_commit, "COMMIT_SECONDS", 0.0)  # the time rule alone lists every shard
    calls.clear()
    run(cohort, tmp_path / "timed", maxcount=1)
    assert calls == [1] * 6


def test_a_crash_costs_only_the_unlisted_shards(cohort, tmp_path, monkeypatch):
    monkeypatch.setattr(shard_commit, "COMMIT_FRACTION", 1.0)
    monkeypatch.setattr(shard_commit, "COMMIT_SECONDS", 3600.0)
    real_write, calls = ShardTarWriter.write, {"n": 0}

    def crash_on_sixth(self, sample):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt("simulated crash")
        return real_write(self, sample)

    monkeypatch.setattr(ShardTarWriter, "write", crash_on_sixth)
    out = tmp_path / "shards"
    with pytest.raises(KeyboardInterrupt):
        run(cohort, out, maxcount=1)
    monkeypatch.undo()
    assert pq.read_table(out / sh.MANIFEST_FILE).num_rows == 4  # shard 5 was closed but not yet listed
    resumed = run(cohort, out, maxcount=1)
    assert resumed.removed_orphans == ["shard-000004.tar"]
    assert resumed.counts.skipped == 4 and resumed.counts.rows_out == 2
    assert assert_consistent(out).num_rows == 6


def test_a_failure_that_is_not_bad_input_keeps_the_complete_shards(cohort, tmp_path, monkeypatch):
    from radsim.data_contracts.errors import UnexpectedStageError
    from radsim.imaging import worker

    monkeypatch.setattr(shard_commit, "COMMIT_FRACTION", 1.0)
    monkeypatch.setattr(shard_commit, "COMMIT_SECONDS", 3600.0)
    real, calls = worker.normalise_to_png, {"n": 0}

    def bug_on_fifth(*args):
        calls["n"] += 1
        if calls["n"] == 5:
            raise AttributeError("a bug")
        return real(*args)

    monkeypatch.setattr(worker, "normalise_to_png", bug_on_fifth)
    out = tmp_path / "shards"
    with pytest.raises(UnexpectedStageError):
        run(cohort, out, maxcount=1)
    # shards 1-3 closed (the third waiting to be listed), the fourth still open: 3 are kept, listed
    assert assert_consistent(out).num_rows == 3


@pytest.mark.parametrize("where", ["manifest", "tar"])
def test_interrupted_run_resumes_without_duplicates_or_loss(cohort, tmp_path, monkeypatch, where):
    out = tmp_path / "shards"
    calls = {"n": 0}
    if where == "manifest":
        real = shard_commit._append_manifest

        def crash_on_second(plan, rows):  # shard 2 renamed into place, manifest not yet updated
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt("simulated crash")
            return real(plan, rows)

        monkeypatch.setattr(shard_commit, "_append_manifest", crash_on_second)
    else:
        real_write = ShardTarWriter.write

        def crash_mid_shard(self, sample):
            calls["n"] += 1
            if calls["n"] == 4:
                raise KeyboardInterrupt("simulated crash")
            return real_write(self, sample)

        monkeypatch.setattr(ShardTarWriter, "write", crash_mid_shard)
        monkeypatch.setattr(ShardTarWriter, "abort", lambda self: None)  # a hard kill leaves the temp file
    with pytest.raises(KeyboardInterrupt):
        run(cohort, out, maxcount=2)
    monkeypatch.undo()
    partial = pq.read_table(out / sh.MANIFEST_FILE).num_rows
    assert partial == 2
    resumed = run(cohort, out, maxcount=2)
    assert resumed.counts.skipped == 2 and resumed.counts.rows_out == 4
    manifest = assert_consistent(out)
    assert manifest.num_rows == 6
    if where == "manifest":
        assert resumed.removed_orphans == ["shard-000001.tar"]
    # Same content as an uninterrupted run.
    clean = tmp_path / "clean"
    run(cohort, clean, maxcount=2)
    assert sorted(manifest.column("image_sha256").to_pylist()) == sorted(
        pq.read_table(clean / sh.MANIFEST_FILE).column("image_sha256").to_pylist()
    )


def test_no_identifier_reaches_shards_or_manifest(cohort, tmp_path, fake_phi, shared_dicom_dir, privacy_scan):
    rows = cohort["rows"] + [
        {"exam_id": "RG1-REAL", "patient_id": "9RG1", "image_uri": str(shared_dicom_dir / "RG1_J2KI.dcm")}
    ]
    out = tmp_path / "shards"
    summary = run(cohort, out, exams=write_exams_csv(cohort["dir"] / "exams_real.csv", rows))
    assert summary.counts.rows_out == 7
    needles = [v for v in fake_phi.values()] + ["Doe", "Quintessa", "CompressedSamples", "19400305"]
    needles += [f"ACC{555000 + i}" for i in range(5)]
    needles += [r["exam_id"] for r in rows] + [r["patient_id"] for r in rows] + ["inbox", str(cohort["dir"]), ".dcm"]
    scanned = privacy_scan.scanned_files(out)
    assert any(p.endswith(".tar") for p in scanned) and "manifest.parquet" in scanned
    assert privacy_scan.find_identifiers(out, needles) == []
    key = pq.read_table(out / sh.MANIFEST_FILE).column("exam_key")[0].as_py()  # the scan does see decoded values
    assert {hit for _, hit in privacy_scan.find_identifiers(out, [key])} == {key}


def test_splits_are_sticky_and_patient_level(cohort, tmp_path):
    out = tmp_path / "shards"
    run(cohort, out, split_fractions=(0.5, 0.25, 0.25))
    manifest = pq.read_table(out / sh.MANIFEST_FILE).to_pylist()
    splits = dict(zip(*pq.read_table(out / "splits.parquet").to_pydict().values()))
    for r in manifest:
        assert r["split"] == splits[r["patient_key"]] == hash_split(r["patient_key"], (0.5, 0.25, 0.25))
    # Overwrite the record: the recorded split wins over the hash, and new fractions change nothing.
    forced = {pk: "test" for pk in splits}
    pq.write_table(pa.table({"patient_key": list(forced), "split": list(forced.values())}).replace_schema_metadata(
        {"radsim.key_id": demo_keyer().key_id}), out / "splits.parquet")
    shutil.rmtree(out / "x", ignore_errors=True)
    for p in out.glob("shard-*.tar"):
        p.unlink()
    (out / sh.MANIFEST_FILE).unlink()
    run(cohort, out, split_fractions=(1.0, 0.0, 0.0))
    assert set(pq.read_table(out / sh.MANIFEST_FILE).column("split").to_pylist()) == {"test"}
    # hash_split is a pure function of the key
    assert hash_split("abc") == hash_split("abc")
    assert {hash_split(f"k{i}") for i in range(200)} == {"train", "val", "test"}


def test_guards_on_existing_folder(cohort, tmp_path):
    out = tmp_path / "shards"
    run(cohort, out)
    with pytest.raises(UsageError, match="another pseudonymisation key"):
        run(cohort, out, keyer=IdKeyer(b"another-site-secret-0123456789"))
    with pytest.raises(UsageError, match="px"):
        run(cohort, out, image_size=64)
    other = default_vocabulary()
    from radsim.data_contracts import Vocabulary
    small = Vocabulary("tiny", "1", other.findings[:3])
    with pytest.raises(UsageError):
        run(cohort, tmp_path / "other", labels=cohort["labels"], site=sh.ShardSite(vocabulary=small))
    with pytest.raises(UsageError):
        run(cohort, tmp_path / "frac", split_fractions=(0.5, 0.5, 0.5))


def test_exams_without_labels_table_are_unlabelled(cohort, tmp_path):
    summary = run(cohort, tmp_path / "s", labels=None)
    assert summary.counts.rows_out == 6
    assert not any(pq.read_table(tmp_path / "s" / sh.MANIFEST_FILE).column("labelled").to_pylist())


def test_shard_rotation_respects_maxsize(cohort, tmp_path):
    summary = run(cohort, tmp_path / "s", maxsize=10240)
    sizes = [(tmp_path / "s" / n).stat().st_size for n in summary.shards_written]
    assert len(sizes) >= 2
    assert all(s <= 10240 for s in sizes)
