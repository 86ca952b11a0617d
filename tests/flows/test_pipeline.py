"""The scheduled `pipeline` flow: incremental runs decided by the ledger (issue 7)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from radsim.flows.config import resolve_config

TINY = {"imaging.image_size": 64, "model.image_size": 64, "model.max_steps": 3, "model.batch_size": 16,
        "model.force_promote": True}  # these tests are about runs, not the promotion gates (warehouse/test_promotion)


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    from radsim.synthetic import generate_cohort

    root = tmp_path_factory.mktemp("cohorts")
    a = generate_cohort(root / "a", exams=24, seed=11, image_size=64, progress=False)
    b = generate_cohort(root / "b", exams=8, seed=12, image_size=64, progress=False)
    return a, b


def _copy(src: Path, inbox: Path, prefix: str = "") -> set[str]:
    """Copy a cohort's exam folders; a prefix renames them (generate_cohort's ids repeat across seeds)."""
    inbox.mkdir(parents=True, exist_ok=True)
    names = set()
    for folder in src.iterdir():
        shutil.copytree(folder, inbox / (prefix + folder.name))
        names.add(prefix + folder.name)
    return names


def _published(warehouse: Path):
    return pq.read_table(warehouse / "published" / "embeddings")


def test_pipeline_is_incremental(prefect_harness, cohorts, tmp_path):
    """Five runs over a growing inbox: each does only what is new (its steps below)."""
    a, b = cohorts
    inbox, wh = tmp_path / "inbox", tmp_path / "wh"
    cfg = resolve_config(TINY, environ={})
    ids_a = _copy(a.inbox, inbox)
    first = _first_run(inbox, wh, cfg, ids_a)
    ids_b = _copy(b.inbox, inbox, prefix="B")
    second, early, early_report, early_row, ledger = _images_before_their_report(inbox, wh, cfg, ids_a, ids_b, first)
    _nothing_new_changes_nothing(inbox, wh, cfg, ledger)
    _amended_and_late_reports(inbox, wh, cfg, ids_a, early, early_report, early_row, second)
    _resent_pixels_are_quarantined(inbox, wh, cfg, ids_a)


def _run(inbox, wh, cfg):
    from radsim.flows.pipeline import pipeline

    return pipeline(str(inbox), str(wh), config=cfg, demo_key=True, quiet=True)


def _first_run(inbox, wh, cfg, ids_a):
    first = _run(inbox, wh, cfg)
    assert set(first.labelled) == ids_a and set(first.sharded) == ids_a
    assert first.promotion and first.promotion["promoted"]
    assert _published(wh).num_rows == first.published_rows > 0
    assert (wh / "config.json").exists() and (wh / "restricted" / "ledger.parquet").exists()
    return first


def _images_before_their_report(inbox, wh, cfg, ids_a, ids_b, first):
    n_a = first.published_rows
    early = sorted(ids_b)[0]  # its images arrive before its report
    early_report = (inbox / early / "report.txt").read_text()
    (inbox / early / "report.txt").unlink()
    second = _run(inbox, wh, cfg)
    assert set(second.labelled) == ids_b - {early} and set(second.sharded) == ids_b
    assert second.promotion is None and second.model_version == first.model_version
    stages = {c.stage: c for c in second.counts}
    assert stages["label"].rows_out == len(ids_b) - 1 and stages["label"].skipped == len(ids_a) + 1
    published = _published(wh)
    assert published.num_rows == second.published_rows > n_a
    assert "exam_id" not in published.column_names
    ledger = pq.read_table(wh / "restricted" / "ledger.parquet")
    assert set(ledger.column("exam_id").to_pylist()) == ids_a | ids_b
    early_row = next(r for r in ledger.to_pylist() if r["exam_id"] == early)
    assert early_row["label_status"] == "awaiting_report" and early_row["shard_status"] == "done"
    early_pub = [r for r in published.select(["exam_key", "no_finding"]).to_pylist()
                 if r["exam_key"] == early_row["exam_key"]]
    assert early_pub and all(r["no_finding"] is None for r in early_pub)  # published unlabelled, not quarantined
    return second, early, early_report, early_row, ledger


def _nothing_new_changes_nothing(inbox, wh, cfg, ledger):
    shards_before = sorted(p.name for p in (wh / "shards").glob("*.tar"))
    third = _run(inbox, wh, cfg)
    assert third.nothing_new and third.labelled == [] and third.sharded == []
    assert any("nothing new" in n for n in third.notes)
    assert sorted(p.name for p in (wh / "shards").glob("*.tar")) == shards_before
    assert pq.read_table(wh / "restricted" / "ledger.parquet").equals(ledger)


def _amended_and_late_reports(inbox, wh, cfg, ids_a, early, early_report, early_row, second):
    """An amended report: that exam alone is re-labelled and re-published with its new labels."""
    amended = sorted(ids_a)[0]
    (inbox / amended / "report.txt").write_text("FINDINGS: Large right pneumothorax.\nIMPRESSION: Pneumothorax.")
    (inbox / early / "report.txt").write_text(early_report)  # the late report arrives
    fourth = _run(inbox, wh, cfg)
    assert fourth.labelled == sorted([amended, early]) and fourth.sharded == []
    assert fourth.published_rows == second.published_rows
    labels = pq.read_table(wh / "restricted" / "labels.parquet").to_pylist()
    row = next(r for r in labels if r["exam_id"] == amended)
    assert row["pneumothorax"] == 1
    assert len(labels) == len({r["exam_id"] for r in labels})
    key = next(
        r["exam_key"]
        for r in pq.read_table(wh / "restricted" / "ledger.parquet").to_pylist()
        if r["exam_id"] == amended
    )
    pub = [r for r in _published(wh).select(["exam_key", "positive_findings"]).to_pylist() if r["exam_key"] == key]
    assert pub and all("pneumothorax" in r["positive_findings"] for r in pub)
    early_key = early_row["exam_key"]
    assert all(r["no_finding"] is not None for r in _published(wh).select(["exam_key", "no_finding"]).to_pylist()
               if r["exam_key"] == early_key)


def _resent_pixels_are_quarantined(inbox, wh, cfg, ids_a):
    """A re-send with other pixels: shards are never rewritten, so the image is quarantined and the
    ledger says so instead of marking the exam sharded."""
    resent, donor = sorted(ids_a)[1], sorted(ids_a)[2]
    shutil.copy(inbox / donor / "0.dcm", inbox / resent / "0.dcm")
    fifth = _run(inbox, wh, cfg)
    assert fifth.sharded == [resent]
    resent_row = next(
        r for r in pq.read_table(wh / "restricted" / "ledger.parquet").to_pylist() if r["exam_id"] == resent
    )
    assert resent_row["shard_status"] == "quarantined"
    assert not (wh / "shards" / "quarantine.parquet").exists()  # refusals name raw ids: restricted only
    shard_q = pq.read_table(wh / "restricted" / "shard-quarantine.parquet").to_pylist()
    assert any(r["record_id"].startswith(f"{resent}/") for r in shard_q)


def test_train_flow_promotes_only_through_the_gates(prefect_harness, cohorts, tmp_path):
    import json

    from radsim.flows.pipeline import pipeline, train

    a, _ = cohorts
    inbox, wh = tmp_path / "inbox", tmp_path / "wh"
    cfg = resolve_config(TINY, environ={})
    _copy(a.inbox, inbox)
    first = pipeline(str(inbox), str(wh), config=cfg, demo_key=True, quiet=True)
    # 24 exams leave a validation split of a few patients: the gates cannot tell a model from noise
    gated = train(
        str(wh), config=cfg.updated({"model.seed": 1, "model.force_promote": False}), demo_key=True, quiet=True
    )
    decision = gated.promotion
    assert decision["current"] == first.model_version
    assert (
        decision["outcome"] == "undecided"
        and not decision["promoted"]
        and "patients, fewer than the 30" in decision["reason"]
    )
    current = json.loads((wh / "models" / "current.json").read_text())
    assert current["model_version"] == first.model_version
    assert current["last_undecided"]["reason"] == decision["reason"]
    card = json.loads((wh / "models" / decision["candidate"] / "model_card.json").read_text())
    assert card["promotion"]["outcome"] == "undecided"
    assert set(pq.read_table(wh / "restricted" / "ledger.parquet").column("published_version").to_pylist()) == {
        first.model_version}
    assert gated.published_rows == first.published_rows  # the current model's rows, republished
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        runs = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["radsim-train-run"])))
    report = max(runs, key=lambda a: a.created).data  # the train deployment's artifact: no stage, said in a sentence
    assert "| stage |" not in report and "No ingest, label or shard stage ran" in report
    assert "**Decision: undecided:" in report

    from radsim.warehouse.published import current_version, read_versions

    assert current_version(wh / "published") == first.model_version
    # TINY forces promotion; keep_versions = 1 prunes the first version once the new one is current
    forced = train(
        str(wh), config=cfg.updated({"model.seed": 2, "publish.keep_versions": 1}), demo_key=True, quiet=True
    )
    assert forced.promotion["promoted"] and forced.promotion["forced"] and forced.promotion["outcome"] == "undecided"
    current = json.loads((wh / "models" / "current.json").read_text())
    assert current["model_version"] == forced.promotion["candidate"] and current["decision"]["forced"]
    assert current["previous"]["model_version"] == first.model_version
    assert set(_published(wh).column("model_version").to_pylist()) == {forced.promotion["candidate"]}
    versions = read_versions(wh / "published").to_pylist()
    assert [(v["model_version"], v["current"]) for v in versions] == [(forced.promotion["candidate"], True)]
    assert "forced" in versions[0]["reason"] or "current model" in versions[0]["reason"]
    assert any(n.startswith("prune: removed 1 version(s)") for n in forced.notes)
    assert set(pq.read_table(wh / "restricted" / "ledger.parquet").column("published_version").to_pylist()) == {
        forced.promotion["candidate"]}


def test_radsim_run_cli_then_nothing_new(prefect_harness, cohorts, tmp_path, capsys):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from radsim.flows.cli import main

    a, _ = cohorts
    toml = tmp_path / "radsim.toml"
    toml.write_text(f'[paths]\nwarehouse = "{tmp_path / "wh"}"\n[imaging]\nimage_size = 64\n'
                    '[model]\nimage_size = 64\nmax_steps = 3\nbatch_size = 16\nforce_promote = true\n')
    assert main(["run", str(a.inbox), "--demo-key", "--config", str(toml), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "label: " in out and "published" in out
    assert json_settings(tmp_path / "wh")["imaging.image_size"] == 64
    assert main(["run", str(a.inbox), "--demo-key", "--config", str(toml), "--no-progress"]) == 0
    assert "nothing new" in capsys.readouterr().out
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[
            "radsim-pipeline-run", "label-counts", "shard-counts"])))
    assert {a.key for a in found} >= {"radsim-pipeline-run", "label-counts", "shard-counts"}


def json_settings(warehouse: Path) -> dict:
    import json

    return json.loads((warehouse / "config.json").read_text())["settings"]
