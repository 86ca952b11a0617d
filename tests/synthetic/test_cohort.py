"""The cohort on disk: determinism, contracts, DICOM round trip, bad records, preview, CLI."""
from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from radsim.data_contracts import load_contract, read_contract_table, reason_codes
from radsim.flows.cli import main
from radsim.synthetic import DicomVariant, generate_cohort, plan_cohort, render_exam
from radsim.synthetic.dicom_writer import build_dataset

N, SIZE, SEED = 60, 96, 5


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("cohort")
    return generate_cohort(out, exams=N, seed=SEED, bad=True, preview=True, image_size=SIZE, progress=False)


def _digest(root: Path, skip_bad: bool = True) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix in (".dcm", ".txt", ".parquet") and not (skip_bad and "resent" in p.parts):
            out[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def decode_display(ds: pydicom.Dataset) -> np.ndarray:
    """What a reader does: modality LUT, then VOI window, then invert MONOCHROME1 once."""
    arr = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds).astype(np.float64)
    top = float((1 << int(ds.BitsStored)) - 1)
    arr = arr / top
    return 1.0 - arr if ds.PhotometricInterpretation == "MONOCHROME1" else arr


def test_same_seed_reproduces_the_same_cohort(tmp_path, cohort):
    again = generate_cohort(tmp_path / "a", exams=N, seed=SEED, image_size=SIZE, progress=False)
    first = {k: v for k, v in _digest(cohort.out_dir).items() if k in _digest(again.out_dir)}
    assert first == _digest(again.out_dir)
    assert len(first) >= 2 * N + 3  # every dcm, report and table is byte-identical
    other = generate_cohort(tmp_path / "b", exams=N, seed=SEED + 1, image_size=SIZE, progress=False)
    assert pq.read_table(other.truth_path) != pq.read_table(again.truth_path)


def test_tables_validate_against_their_contracts(cohort):
    exams = read_contract_table(cohort.exams_path, load_contract("exams"))
    labels = load_contract("labels")
    truth = read_contract_table(cohort.truth_path, labels)
    rtruth = read_contract_table(cohort.report_truth_path, labels)
    assert truth.num_rows == rtruth.num_rows == N
    assert pq.read_schema(cohort.truth_path).metadata[b"radsim.vocabulary.name"] == b"radsim-default"
    rows = exams.to_pylist()
    assert len(rows) == cohort.n_images > N - 1
    assert {r["source"] for r in rows} == {"synthetic"}
    for r in rows:
        assert not Path(r["image_uri"]).is_absolute() and (cohort.out_dir / r["image_uri"]).is_file()
        assert r["view_position"] in ({"PA", "AP"} if r["image_index"] == 0 else {"LATERAL"})
        assert r["exam_id"].startswith("ACC") and r["patient_id"].startswith("MRN")
    assert cohort.n_patients < N  # some patients have several exams
    assert set(truth.column("evidence").to_pylist()) == {None}


def test_dicoms_decode_to_the_intended_image(cohort):
    specs = {s.exam_id: s for s in plan_cohort(exams=N, seed=SEED)}
    seen = set()
    for row in pq.read_table(cohort.exams_path).to_pylist():
        ds = pydicom.dcmread(cohort.out_dir / row["image_uri"])
        spec = specs[row["exam_id"]]
        assert (ds.Modality, ds.BodyPartExamined) == ("DX", "CHEST")
        assert ds.AccessionNumber == row["exam_id"] and ds.PatientID == row["patient_id"]
        assert ds.ViewPosition == row["view_position"]
        assert (ds.PresentationLUTShape == "INVERSE") == (ds.PhotometricInterpretation == "MONOCHROME1")
        want = render_exam(spec, row["image_index"], SIZE)
        got = decode_display(ds)
        assert np.abs(got - want).max() <= 0.5 / ((1 << int(ds.BitsStored)) - 1) + 1e-6
        seen.add((ds.PhotometricInterpretation, int(ds.BitsStored), ds.file_meta.TransferSyntaxUID.is_compressed))
    assert {p for p, _, _ in seen} == {"MONOCHROME1", "MONOCHROME2"}
    assert {12, 16} <= {b for _, b, _ in seen}
    assert {True, False} == {c for _, _, c in seen}


@pytest.mark.parametrize("variant", [DicomVariant(p, b, c) for p in ("MONOCHROME1", "MONOCHROME2")
                                     for b, c in ((10, "rle"), (12, "j2k"), (16, "none"))])
def test_every_variant_round_trips(variant):
    spec = plan_cohort(exams=2, seed=1)[0]
    img = render_exam(spec, 0, 64)
    ds = build_dataset(img, spec, 0, variant=variant)
    assert ds.file_meta.TransferSyntaxUID.is_compressed == (variant.compression != "none")
    np.testing.assert_allclose(decode_display(ds), img, atol=0.5 / ((1 << variant.bits_stored) - 1) + 1e-6)


def test_bad_records_only_on_request(cohort, tmp_path):
    plain = generate_cohort(tmp_path, exams=20, seed=1, image_size=64, progress=False)
    assert plain.bad_path is None and not (tmp_path / "bad_exams.csv").exists()
    assert len(list(plain.inbox.iterdir())) == 20
    with cohort.bad_path.open() as fh:
        bad = list(csv.DictReader(fh))
    reasons = {r["expected_reason"] for r in bad}
    assert reasons == {"unreadable_image", "empty_report", "duplicate_id", "not_chest"}
    assert reasons <= set(reason_codes())
    exam_ids = set(pq.read_table(cohort.exams_path).column("exam_id").to_pylist())
    by = {r["expected_reason"]: r for r in bad}
    assert by["duplicate_id"]["exam_id"] in exam_ids
    assert not ({by[k]["exam_id"] for k in ("unreadable_image", "empty_report", "not_chest")} & exam_ids)
    with pytest.raises(ValueError):  # truncated pixel data
        pydicom.dcmread(cohort.out_dir / by["unreadable_image"]["image_uri"]).pixel_array  # noqa: B018
    assert (cohort.out_dir / by["empty_report"]["image_uri"]).parent.joinpath("report.txt").read_text() == ""
    assert pydicom.dcmread(cohort.out_dir / by["not_chest"]["image_uri"]).BodyPartExamined != "CHEST"


def test_preview_contact_sheet(cohort):
    from PIL import Image

    with Image.open(cohort.preview_path) as im:
        assert im.size[0] > 300 and im.size[1] > 300


def test_cli_bad_input_exits_2(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["synth", "--exams", "-1", "--out", str(tmp_path / "o")]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["synth", "--exams", "3", "--out", str(tmp_path / "o"), "--overcall-rate", "1.5"])
    assert exc.value.code == 2
    assert main(["synth", "--exams", "3", "--out", str(tmp_path / "file" / "sub")]) == 2
    err = capsys.readouterr().err
    assert "cannot write" in err and "Traceback" not in err


def test_cli_writes_a_cohort(tmp_path, capsys):
    assert main(["synth", "--exams", "4", "--out", str(tmp_path), "--image-size", "64", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert "4 exams" in out and "exams.parquet" in out
    assert main(["synth", "--exams", "4", "--out", str(tmp_path), "--image-size", "64"]) == 2  # not silently mixed
    assert main(["synth", "--exams", "4", "--out", str(tmp_path), "--image-size", "64", "--overwrite"]) == 0

