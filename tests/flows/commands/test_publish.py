"""`radsim publish` end to end, its refusals (exit 2), and the publish_embeddings flow."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from radsim.flows.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # torch on one thread, as in tests/model/


def test_cli_publishes_and_republishes(cohort, model_dir, tmp_path, capsys):
    out = tmp_path / "published"
    assert main(["publish", "--model", str(model_dir), "--shards", str(cohort.shards), "--out", str(out),
                 "--device", "cpu", "--batch-size", "7", "--no-progress"]) == 0
    assert "published model version v1" in capsys.readouterr().out
    folder = out / "embeddings" / "v1"
    first = pq.read_table(folder)
    assert main(["publish", "--model", str(model_dir), "--shards", str(cohort.shards), "--out", str(out),
                 "--device", "cpu", "--no-progress"]) == 0
    assert "replaced model version v1" in capsys.readouterr().out
    assert len(list(folder.iterdir())) == 1  # the old publication's file went with the swap
    second = pq.read_table(folder)  # batch size changes neither the rows, their order nor (beyond rounding) the vectors
    assert second.drop_columns(["embedding"]).equals(first.drop_columns(["embedding"]))
    assert np.allclose(second.column("embedding").to_pylist(), first.column("embedding").to_pylist(), atol=1e-5)


@pytest.mark.parametrize("change, message", [
    ({"key_id": "0123456789ab"}, "different pseudonymisation key"),
    ({"findings": ["no_finding", "cardiomegaly"]}, "another vocabulary"),
    ({"image_size": 128}, "reshard with --image-size 128"),
])
def test_refuses_shards_that_do_not_fit_the_model(cohort, model_factory, tmp_path, capsys, change, message):
    bad_model = model_factory(tmp_path / "m", **change)
    out = tmp_path / "published"
    rc = main(
        ["publish", "--model", str(bad_model), "--shards", str(cohort.shards), "--out", str(out), "--no-progress"]
    )
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not (out / "embeddings").exists() or not any((out / "embeddings").iterdir())


def test_missing_model_or_shards_exit_2(cohort, model_dir, tmp_path, capsys):
    assert main(["publish", "--model", str(tmp_path / "nope"), "--shards", str(cohort.shards),
                 "--out", str(tmp_path / "o")]) == 2
    assert main(["publish", "--model", str(model_dir), "--shards", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint" in err and "no manifest.parquet" in err


def test_flow_embeds_publishes_and_evaluates_through_prefect(prefect_harness, cohort, model_dir, tmp_path):
    from radsim.flows.publish_embeddings import publish_embeddings
    from radsim.model.embed_config import EmbedConfig

    result = publish_embeddings(str(model_dir), str(cohort.shards), str(tmp_path / "pub"), EmbedConfig(device="cpu"),
                                report_dir=str(tmp_path / "report"), truth=str(cohort.truth), demo_key=True,
                                split="all")
    assert result["model_version"] == "v1" and result["rows"] == pq.read_table(
        tmp_path / "pub" / "embeddings" / "v1").num_rows
    records = json.loads((tmp_path / "report" / "evaluation.json").read_text())
    assert any(r["metric"] == "precision_at_k" and r["k"] == 10 for r in records)
    assert any(line.startswith("P@10") for line in result["headline"])
    assert (tmp_path / "report" / "gallery.png").stat().st_size > 0  # the flow passes the shards for the gallery
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts()
    assert any(a.key == "evaluation-report" and a.type == "markdown" and "P@10" in str(a.data) for a in artifacts)


def test_similar_by_image_embeds_a_new_radiograph(cohort, model_dir, published, capsys):
    from radsim.data_contracts import demo_keyer

    exam_id = pq.read_table(cohort.exams).column("exam_id")[5].as_py()
    image = cohort.cohort_dir / "inbox" / exam_id / "0.dcm"
    assert main(["similar", "--embeddings", str(published), "--image", str(image), "--model", str(model_dir),
                 "--k", "3", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    first = doc["neighbours"][0]
    assert first["exam_key"] == demo_keyer().exam_key(exam_id) and first["distance"] < 1e-4
    assert (
        main(["similar", "--embeddings", str(published), "--image", str(cohort.exams), "--model", str(model_dir)]) == 2
    )
    assert "cannot use" in capsys.readouterr().err


def _versions(out):
    return {r["model_version"]: r for r in pq.read_table(out / "versions.parquet").to_pylist()}


def test_publish_of_an_undecided_model_is_not_made_current_without_force_promote(cohort, model_factory, tmp_path,
                                                                                 capsys):
    model = model_factory(tmp_path / "m")  # a card with no validation metrics: the gates are undecided
    out = tmp_path / "published"
    args = ["publish", "--model", str(model), "--shards", str(cohort.shards), "--out", str(out), "--device", "cpu",
            "--no-progress"]
    assert main(args) == 0
    said = capsys.readouterr().out
    assert "published beside the current version, not made current: the gates did not promote this model " \
           "(undecided: validation split of 0 patients" in said and "--force-promote makes it current" in said
    row = _versions(out)["v1"]
    assert row["current"] is False and row["reason"].startswith("undecided: validation split of 0 patients")
    card = json.loads(
        pq.read_schema(next((out / "embeddings" / "v1").glob("*.parquet"))).metadata[b"radsim.model_card"]
    )
    assert card["promotion"]["state"] == "undecided" and card["promotion"]["decided_by"] == "radsim publish"
    assert "promotion" not in json.loads((model / "model_card.json").read_text()) or \
        json.loads((model / "model_card.json").read_text())["promotion"] == {}  # the model folder is not written to

    assert main([*args, "--force-promote"]) == 0
    assert "made current: published with radsim publish; forced: by --force-promote, overriding undecided" in \
        capsys.readouterr().out
    row = _versions(out)["v1"]
    assert row["current"] is True and "forced: by --force-promote, overriding undecided" in row["reason"]


def test_a_forced_collapsed_model_is_reported_as_both_everywhere(cohort, model_factory, tmp_path, capsys):
    from radsim.evaluation.display import model_card_markdown
    from radsim.model.promotion import promote_through_gates
    from radsim.warehouse.card import read_card, update_card
    from radsim.warehouse.registry import current_model

    models = tmp_path / "models"
    model = model_factory(models / "v1")
    collapsed = {"precision_at_10": 0.4, "precision_at_10_ci": [0.3, 0.5], "precision_at_10_chance": 0.35,
                 "precision_at_10_verdict": "not distinguishable", "n_patients": 3, "n_items": 6,
                 "mean_pairwise_cosine": 0.9991}
    update_card(model, metrics=collapsed)
    out = tmp_path / "published"
    assert main(["publish", "--model", str(model), "--shards", str(cohort.shards), "--out", str(out), "--device",
                 "cpu", "--no-progress", "--force-promote"]) == 0
    capsys.readouterr()
    reason = _versions(out)["v1"]["reason"]  # versions.parquet
    assert "forced: by --force-promote, overriding undecided" in reason and "collapsed" in reason
    assert main(["evaluate", "--embeddings", str(out), "--out", str(tmp_path / "report"), "--no-plots",
                 "--split", "all"]) == 0
    summary = capsys.readouterr().out
    assert "model decision: forced: by --force-promote" in summary and "collapsed" in summary  # the command
    report = (tmp_path / "report" / "report.md").read_text()  # report.md
    assert "- Model decision: forced: by --force-promote, overriding undecided" in report and "collapsed" in report
    records = json.loads((tmp_path / "report" / "evaluation.json").read_text())  # evaluation.json
    assert records and all(r["decision"] == "forced" and r["collapsed"] is True for r in records)
    # the pipeline's registry: the model card, current.json and the model-card artifact
    decision = promote_through_gates(models, "v1", force="model.force_promote in radsim.toml")
    assert decision.promoted and decision.gate.state == "forced" and decision.gate.collapsed
    card = read_card(model)
    assert card.promotion["state"] == "forced" and card.promotion["collapsed"] is True
    record = current_model(models)
    assert record["decision"]["collapsed"] is True and record["reason"].startswith("forced: by model.force_promote")
    assert "collapsed" in record["reason"]
    artifact = model_card_markdown("v1", card.metrics, card.baseline_metrics, card.promotion)
    assert "**collapsed**" in artifact and "Gate decision: forced: by model.force_promote in radsim.toml" in artifact
    assert "labelled frontal films of 3 patients" in artifact and "[0.300, 0.500]" in artifact
