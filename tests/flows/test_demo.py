"""`radsim demo` runs the stages end to end through Prefect and reconciles every count."""
from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from radsim.data_contracts import UsageError, load_contract
from radsim.flows.demo import DEMO_MARKER, demo_flow, prepare_output


def test_demo_runs_end_to_end_through_prefect(prefect_harness, tmp_path, capsys):
    # 40 exams and 4 steps cannot pass the gates (too few validation patients): force the
    # promotion so that every stage runs, and check that the override is on the record.
    result = demo_flow(out=tmp_path / "demo", n_exams=40, seed=3, progress=False,
                       training={"max_steps": 4, "batch_size": 16, "image_size": 64, "force_promote": True})

    stages = {c.stage: c for c in result.counts}
    assert set(stages) == {"ingest", "label", "shard"}
    for counts in stages.values():
        assert counts.balanced, counts.summary()
    for name, path in result.outputs.items():
        assert path.exists(), f"{name} missing at {path}"

    quarantine = load_contract("quarantine").validate(pq.read_table(result.outputs["quarantine (restricted)"]))
    reasons = sorted(quarantine.column("reason_code").to_pylist())
    # the synthetic --bad set: one record per reason, each caught by the stage that owns it
    assert reasons == ["duplicate_id", "empty_report", "not_chest", "unreadable_image"]
    by_stage = dict(zip(quarantine.column("reason_code").to_pylist(), quarantine.column("stage").to_pylist()))
    assert by_stage == {
        "duplicate_id": "ingest",
        "empty_report": "label",
        "not_chest": "shard",
        "unreadable_image": "shard",
    }

    manifest = pq.read_table(result.layout.shards / "manifest.parquet")
    exams = pq.read_table(result.outputs["exams (restricted)"])
    assert manifest.num_rows == exams.num_rows - 2  # the corrupt and the hip images
    assert stages["shard"].rows_out == manifest.num_rows
    assert "exam_id" not in manifest.column_names
    printed = capsys.readouterr().out
    assert "[6/6]" in printed

    models = result.layout.warehouse / "models"
    current = json.loads((models / "current.json").read_text())
    assert result.outputs["model"] == models / current["model_version"]
    assert "force" in json.dumps(current).lower()
    assert (result.outputs["model"] / "model.pt").exists() and (result.outputs["model"] / "model_card.json").exists()
    assert [p.name for p in models.iterdir() if p.name.startswith("training-")] == []

    published = pq.read_table(result.outputs["published embeddings"])
    assert published.num_rows == manifest.num_rows
    assert set(published.column("model_version").to_pylist()) == {current["model_version"]}
    assert result.outputs["evaluation report"].exists()
    assert any(line.startswith("P@10") for line in result.headline)


def test_demo_never_deletes_a_folder_it_did_not_make(tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(UsageError, match="not made by radsim demo"):
        prepare_output(precious)
    assert (precious / "thesis.tex").exists()


def test_demo_output_is_rebuilt_afresh(tmp_path):
    layout = prepare_output(tmp_path / "d")
    (layout.root / "stale.txt").write_text("old")
    layout = prepare_output(tmp_path / "d")
    assert not (layout.root / "stale.txt").exists() and (layout.root / DEMO_MARKER).exists()


def test_demo_cli_rejects_tiny_cohorts(capsys):
    from radsim.flows.cli import main

    assert main(["demo", "--exams", "3"]) == 2
    assert "--exams" in capsys.readouterr().err
