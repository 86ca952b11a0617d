"""The scheduled pipeline embeds only new shards and reuses what the current model version published.

One warehouse goes through: A (trains, embeds all) → A+B (only B's shard embedded) → an amended
report (nothing embedded, every shard reused, labels refreshed) → a lost publish record (full
re-embed) → a retrain (full embed). After each publishing run the table must equal a full
re-embed of every shard with the current model, relabelled from restricted/labels.parquet.
torch runs on one thread in this test, so vectors are compared bitwise.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from radsim.flows.config import resolve_config

TINY = {"imaging.image_size": 64, "model.image_size": 64, "model.max_steps": 3, "model.batch_size": 8,
        "model.force_promote": True}  # these tests are about runs, not the promotion gates (warehouse/test_promotion)


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    from radsim.synthetic import generate_cohort

    root = tmp_path_factory.mktemp("reuse-cohorts")
    return (generate_cohort(root / "a", exams=16, seed=21, image_size=64, progress=False),
            generate_cohort(root / "b", exams=6, seed=22, image_size=64, progress=False))


def _copy(src: Path, inbox: Path, prefix: str = "") -> None:
    inbox.mkdir(parents=True, exist_ok=True)
    for folder in src.iterdir():
        shutil.copytree(folder, inbox / (prefix + folder.name))


def _published(wh: Path, version: str):
    from radsim.warehouse.published import open_version

    return open_version(wh / "published", version).read().replace_schema_metadata(None)


def _full_reembed(wh: Path, version: str, out: Path):
    """What publishing every shard from scratch gives: embed all, relabel from the warehouse labels, publish."""
    from radsim.model.checkpoint import load_model
    from radsim.model.publish import embed_shards, publish_embedded
    from radsim.warehouse.labels import relabel_from_file

    loaded = load_model(wh / "models" / version)
    embedded = embed_shards(loaded, wh / "shards", batch_size=256, device="auto")
    embedded = relabel_from_file(
        embedded, str(wh / "restricted" / "labels.parquet"), pq.read_table(wh / "restricted" / "ledger.parquet")
    )
    publish_embedded(embedded, loaded, out)
    return _published_at(out, version)


def _published_at(published: Path, version: str):
    from radsim.warehouse.published import open_version

    return open_version(published, version).read().replace_schema_metadata(None)


def _shards(wh: Path) -> list[str]:
    return list(dict.fromkeys(pq.read_table(wh / "shards" / "manifest.parquet", columns=["shard"])
                              .column("shard").to_pylist()))


def test_pipeline_embeds_only_new_shards(prefect_harness, one_torch_thread, cohorts, tmp_path, capsys):
    from radsim.flows.pipeline import pipeline

    a, b = cohorts
    inbox, wh = tmp_path / "inbox", tmp_path / "wh"
    cfg = resolve_config(TINY, environ={})
    _copy(a.inbox, inbox)
    first = pipeline(str(inbox), str(wh), config=cfg, demo_key=True, quiet=True)
    v = first.model_version
    n_a_shards = len(_shards(wh))
    assert (
        first.metrics["embedding"]["shards_reused"] == 0 and first.metrics["embedding"]["shards_embedded"] == n_a_shards
    )

    _copy(b.inbox, inbox, prefix="B")
    second = pipeline(str(inbox), str(wh), config=cfg, demo_key=True)
    out = capsys.readouterr().out
    n_new = len(_shards(wh)) - n_a_shards
    assert n_new >= 1 and second.model_version == v and second.promotion is None
    assert f"[5/6] embedding {n_new} new shards with {v} (reusing {n_a_shards} published)" in out
    stats = second.metrics["embedding"]
    assert stats["shards_embedded"] == n_new and stats["shards_reused"] == n_a_shards
    assert (
        stats["rows_reused"] == first.published_rows
        and stats["rows_embedded"] == second.published_rows - first.published_rows
    )
    assert any(f"{n_new} shards embedded" in n and f"{n_a_shards} reused" in n for n in second.notes)
    assert _published(wh, v).equals(_full_reembed(wh, v, tmp_path / "full2"))

    # an amended report: no new shard, nothing embedded, labels refreshed on the reused rows
    amended = min(p.name for p in inbox.iterdir())
    (inbox / amended / "report.txt").write_text("FINDINGS: Large right pneumothorax.\nIMPRESSION: Pneumothorax.")
    third = pipeline(str(inbox), str(wh), config=cfg, demo_key=True, quiet=True)
    assert third.labelled == [amended]
    assert third.metrics["embedding"] == {"shards_embedded": 0, "shards_reused": n_a_shards + n_new,
                                          "rows_embedded": 0, "rows_reused": second.published_rows}
    table = _published(wh, v)
    assert table.equals(_full_reembed(wh, v, tmp_path / "full3"))
    key = next(
        r["exam_key"]
        for r in pq.read_table(wh / "restricted" / "ledger.parquet").to_pylist()
        if r["exam_id"] == amended
    )
    assert all("pneumothorax" in r["positive_findings"] for r in table.to_pylist() if r["exam_key"] == key)

    # the publish record is lost: nothing can be verified, so everything is embedded again
    (wh / "published" / "_manifests" / f"{v}.json").unlink()
    (inbox / amended / "report.txt").write_text("FINDINGS: No pneumothorax. Lungs clear.")
    fourth = pipeline(str(inbox), str(wh), config=cfg, demo_key=True, quiet=True)
    assert fourth.metrics["embedding"]["shards_reused"] == 0
    assert any("not reused" in n and "missing" in n for n in fourth.notes)
    assert _published(wh, v).equals(_full_reembed(wh, v, tmp_path / "full4"))

    # a retrain embeds everything, whichever model ends up current
    fifth = pipeline(
        str(inbox), str(wh), retrain=True, config=cfg.updated({"model.seed": 3}), demo_key=True, quiet=True
    )
    assert fifth.metrics["embedding"]["shards_reused"] == 0 and fifth.metrics["embedding"]["rows_reused"] == 0
    assert any("a training run: nothing reused" in n for n in fifth.notes)
    assert _published(wh, fifth.model_version).equals(_full_reembed(wh, fifth.model_version, tmp_path / "full5"))
