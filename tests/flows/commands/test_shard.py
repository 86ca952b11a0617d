"""`radsim shard` exit codes and the build_shards flow (engine-free, plus one real Prefect run)."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from radsim.flows.cli import main


@pytest.fixture
def exams_csv(tmp_path, make_dicom):
    rows = {"exam_id": [], "patient_id": [], "image_uri": []}
    for i in range(4):
        make_dicom(tmp_path / "img" / f"{i}.dcm", seed=i)
        rows["exam_id"].append(f"X{i}")
        rows["patient_id"].append(f"P{i}")
        rows["image_uri"].append(f"img/{i}.dcm")
    rows["exam_id"].append("X0")  # a duplicate: quarantined, exit code still 0
    rows["patient_id"].append("P0")
    rows["image_uri"].append("img/0.dcm")
    path = tmp_path / "exams.csv"
    pacsv.write_csv(pa.table(rows), path)
    return path


def test_cli_without_key_exits_2(exams_csv, tmp_path, capsys):
    assert main(["shard", "--exams", str(exams_csv), "--out", str(tmp_path / "s")]) == 2
    assert "RADSIM_ID_KEY" in capsys.readouterr().err


def test_cli_with_site_key_then_rerun(exams_csv, tmp_path, site_key, capsys):
    out = tmp_path / "s"
    args = ["shard", "--exams", str(exams_csv), "--out", str(out), "--image-size", "32", "--no-progress"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "5 in = 4 out + 1 quarantined + 0 skipped" in text
    assert main(args) == 0
    assert "nothing new to write" in capsys.readouterr().out
    meta = pq.read_table(out / "manifest.parquet").schema.metadata
    assert not meta[b"radsim.key_id"].startswith(b"demo-")


def test_split_fractions_put_a_validated_set_in_test_and_stay_sticky(exams_csv, tmp_path, site_key, capsys):
    out = tmp_path / "s"
    base = ["shard", "--exams", str(exams_csv), "--out", str(out), "--image-size", "32", "--no-progress"]
    assert main([*base, "--split-fractions", "0,0,1"]) == 0
    assert set(pq.read_table(out / "manifest.parquet").column("split").to_pylist()) == {"test"}
    assert main([*base, "--split-fractions", "1,0,0"]) == 0  # sticky: recorded patients keep their split
    splits = pq.read_table(out / "splits.parquet")
    assert set(splits.column("split").to_pylist()) == {"test"} and splits.num_rows == 4
    assert main([*base, "--split-fractions", "0.5,0.5"]) == 2
    assert "three non-negative numbers summing to 1" in capsys.readouterr().err


def test_cli_usage_errors_exit_2(exams_csv, tmp_path, capsys):
    base = ["shard", "--out", str(tmp_path / "s"), "--demo-key", "--no-progress"]
    assert main(base + ["--exams", str(tmp_path / "missing.csv")]) == 2
    assert main(base + ["--exams", str(exams_csv), "--workers", "0"]) == 2
    bad = tmp_path / "bad.csv"
    pacsv.write_csv(pa.table({"exam_id": ["A"], "image_uri": ["x.dcm"]}), bad)  # no patient_id
    assert main(base + ["--exams", str(bad)]) == 2
    assert "patient_id" in capsys.readouterr().err


def test_flow_fn_engine_free(exams_csv, tmp_path, monkeypatch):
    from radsim.flows import build_shards as bs

    # Run the task bodies directly: no engine, same chaining.
    monkeypatch.setattr(bs.decode_batch_task, "submit", lambda batch, opts: _Done(bs.decode_batch(batch, opts)))
    from radsim.imaging.config import ShardOptions

    result = bs.build_shards.fn(str(exams_csv), None, str(tmp_path / "s"), ShardOptions(image_size=32), demo_key=True)
    assert (result["rows_in"], result["rows_out"], result["quarantined"]) == (5, 4, 1)
    assert result["shards_written"] == ["shard-000000.tar"]


class _Done:
    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


@pytest.mark.slow
def test_flow_through_prefect_matches_plain_run(exams_csv, tmp_path, prefect_harness):
    from radsim.data_contracts import demo_keyer
    from radsim.flows.build_shards import run_build_shards
    from radsim.imaging.shards import write_shards

    result = run_build_shards(str(exams_csv), None, str(tmp_path / "flow"), runner="threads", workers=2,
                              image_size=32, demo_key=True, batch_size=2)
    assert result["rows_out"] == 4
    write_shards(exams_csv, None, tmp_path / "plain", keyer=demo_keyer(), image_size=32, progress=False)
    for name in ("shard-000000.tar", "manifest.parquet"):
        assert (tmp_path / "flow" / name).read_bytes() == (tmp_path / "plain" / name).read_bytes()
