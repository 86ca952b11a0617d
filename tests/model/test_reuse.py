"""Incremental embedding: rows the same model version already published are reused, only new shards embedded.

Cohort A is sharded and published, then cohort B is appended (new shards); the table built from
the reused rows plus B's embedded ones must equal a full re-embed of A+B, bit for bit (torch runs
on one thread here, and a batch never spans two shards, so the same image gets the same vector).
Anything inconsistent in what would be reused means a full re-embed.
"""
from __future__ import annotations

import json
import shutil
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

MAXCOUNT = 7  # samples per shard: A's 30 exams and B's 10 each fill several shards
N_A = 30


@pytest.fixture(scope="module")
def loaded(model_dir):
    from radsim.model.checkpoint import load_model

    return load_model(model_dir)


@pytest.fixture(scope="module")
def staged(cohort, loaded, tmp_path_factory):
    """Shards of A, published under v1; then B appended to the same shard folder (a copy is kept of A's)."""
    from radsim.data_contracts import demo_keyer
    from radsim.imaging.shards import ShardSite, write_shards
    from radsim.model.publish import embed_shards, publish_embedded

    root = tmp_path_factory.mktemp("reuse")
    exams = pq.read_table(cohort.exams)
    ids = sorted(set(exams.column("exam_id").to_pylist()))
    exams_a = exams.filter(pc.is_in(exams.column("exam_id"), value_set=_arr(ids[:N_A])))
    shards = root / "shards"
    kw = {"keyer": demo_keyer(), "image_size": 64, "maxcount": MAXCOUNT, "progress": False,
          "site": ShardSite(base_dir=cohort.exams.parent)}
    write_shards(exams_a, cohort.labels, shards, **kw)
    a_shards = _names(shards)
    published = root / "published"
    publish_embedded(embed_shards(loaded, shards, batch_size=4, device="cpu"), loaded, published)
    write_shards(exams, cohort.labels, shards, **kw)  # B goes to new shards; A's are left as they are
    return shards, published, a_shards


def _arr(values):
    import pyarrow as pa

    return pa.array(values, pa.string())


def _names(shards: Path) -> list[str]:
    return list(
        dict.fromkeys(pq.read_table(shards / "manifest.parquet", columns=["shard"]).column("shard").to_pylist())
    )


def _copy_published(published: Path, tmp_path: Path) -> Path:
    out = tmp_path / "published"
    shutil.copytree(published, out)
    return out


def _table(published: Path, version: str = "v1"):
    from radsim.warehouse.published import open_version

    return open_version(published, version).read().replace_schema_metadata(None)


def _publish(embedded, loaded, out: Path):
    from radsim.model.publish import publish_embedded

    publish_embedded(embedded, loaded, out)
    return _table(out)


@pytest.fixture(scope="module")
def full_table(staged, loaded, tmp_path_factory):
    """The reference: every shard of A+B embedded and published."""
    from radsim.model.publish import embed_shards

    shards, _, _ = staged
    return _publish(embed_shards(loaded, shards, batch_size=4, device="cpu"), loaded,
                    tmp_path_factory.mktemp("full") / "published")


def _recording_submit(loaded, shards, calls):
    from radsim.model.shard_embedding import embed_part

    def submit(names):
        calls.append(list(names))
        fut: Future = Future()
        fut.set_result(embed_part(loaded, shards, names, batch_size=4, device="cpu"))
        return fut

    return submit


@pytest.mark.parametrize("mapped", [False, True])
def test_only_new_shards_are_embedded_and_the_table_equals_a_full_reembed(staged, loaded, full_table, tmp_path,
                                                                          monkeypatch, mapped):
    import radsim.model.publish as mp
    import radsim.model.shard_embedding as shard_embedding

    shards, published, a_shards = staged
    names = _names(shards)
    new = [n for n in names if n not in a_shards]
    assert len(a_shards) >= 4 and new  # something to reuse and something to embed
    plan = mp.plan_reuse(published, shards, loaded)
    assert plan.embed == new and plan.reused_shards == len(a_shards)
    assert plan.reused_rows == _table(published).num_rows

    embedded_rows: list[int] = []
    real = shard_embedding.embed_part
    monkeypatch.setattr(shard_embedding, "embed_part", lambda *a, **k: _count(real(*a, **k), embedded_rows))
    calls: list[list[str]] = []
    submit = _recording_submit(loaded, shards, calls) if mapped else None
    merged = mp.embed_shards(loaded, shards, batch_size=4, device="cpu", reuse=plan, submit=submit, shards_per_task=2)
    if mapped:
        assert [n for g in calls for n in g] == new  # the task runner saw B's shards only
    else:
        assert len(embedded_rows) == 1
    assert sum(embedded_rows) == merged.rows - merged.reused_rows < merged.rows
    assert merged.reused_shards == len(a_shards) and set(merged.shard_digests) == set(names)
    manifest = pq.read_table(shards / "manifest.parquet")
    assert merged.exam_keys == manifest.column("exam_key").to_pylist()  # manifest order
    table = _publish(merged, loaded, _copy_published(published, tmp_path))
    assert table.equals(full_table)  # same rows, order, labels and bitwise vectors
    record = json.loads((tmp_path / "published" / "_manifests" / "v1.json").read_text())
    assert record["reused_rows"] == plan.reused_rows and set(record["shards"]) == set(names)


def _count(part, sink):
    sink.append(part.rows)
    return part


def _break_record(published: Path, edit) -> None:
    path = published / "_manifests" / "v1.json"
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def _flip_byte(published: Path) -> None:
    part = next((published / "embeddings" / "v1").glob("*.parquet"))
    data = bytearray(part.read_bytes())
    data[100] ^= 0xFF  # inside the first data page: the footer still parses, only the checksum can tell
    part.write_bytes(bytes(data))


BREAKAGES = {
    "record missing": (lambda p: (p / "_manifests" / "v1.json").unlink(), "missing"),
    "record unreadable": (lambda p: (p / "_manifests" / "v1.json").write_text("{not json"), "unreadable"),
    "part changed": (_flip_byte, "checksum"),
    "part missing": (lambda p: next((p / "embeddings" / "v1").glob("*.parquet")).unlink(),
                     "holds no Parquet file"),
    "extra part": (lambda p: shutil.copy(next((p / "embeddings" / "v1").glob("*.parquet")),
                                         p / "embeddings" / "v1" / "part-00001-x.parquet"),
                   "does not match its publish record"),
    "row count": (lambda p: _break_record(p, lambda d: d.update(rows=d["rows"] + 1)), "rows"),
    "other key": (lambda p: _break_record(p, lambda d: d.update(key_id="someone-else")), "key_id"),
    "no shard digests": (lambda p: _break_record(p, lambda d: d.pop("shards")), "shard digests"),
    "old record": (lambda p: _break_record(p, lambda d: d["model"].pop("weights_sha256")), "predates"),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_anything_inconsistent_means_a_full_reembed(staged, loaded, full_table, tmp_path, breakage):
    from radsim.model.publish import embed_shards, plan_reuse

    shards, published, _ = staged
    broken = _copy_published(published, tmp_path)
    damage, why = BREAKAGES[breakage]
    damage(broken)
    plan = plan_reuse(broken, shards, loaded)
    assert plan.embed == _names(shards) and plan.reused_shards == 0 and plan.reused is None
    assert "not reused" in plan.note and why in plan.note
    merged = embed_shards(loaded, shards, batch_size=4, device="cpu", reuse=plan)
    assert merged.reused_rows == 0
    assert _publish(merged, loaded, tmp_path / "fresh").equals(full_table)


def test_a_changed_shard_is_embedded_again(staged, loaded, full_table, tmp_path):
    """A shard whose digest differs from the recorded one (rewritten by hand) is not reused; the others are."""
    from radsim.model.publish import embed_shards, plan_reuse

    shards, published, a_shards = staged
    broken = _copy_published(published, tmp_path)
    _break_record(broken, lambda d: d["shards"].update({a_shards[1]: "0" * 64}))
    plan = plan_reuse(broken, shards, loaded)
    assert a_shards[1] in plan.embed and a_shards[0] not in plan.embed and plan.reused_shards == len(a_shards) - 1
    merged = embed_shards(loaded, shards, batch_size=4, device="cpu", reuse=plan)
    assert _publish(merged, loaded, tmp_path / "fresh").equals(full_table)


def test_another_model_under_the_same_version_or_another_version_reuses_nothing(staged, loaded, model_factory,
                                                                                 full_table, tmp_path):
    from radsim.model.checkpoint import load_model
    from radsim.model.publish import embed_shards, plan_reuse

    shards, published, _ = staged
    impostor = load_model(model_factory(tmp_path / "v1", version="v1", seed=7))  # other weights, same name
    plan = plan_reuse(published, shards, impostor)
    assert plan.reused_shards == 0 and "another model" in plan.note
    v2 = load_model(model_factory(tmp_path / "v2", version="v2"))
    plan = plan_reuse(published, shards, v2)
    assert plan.reused_shards == 0 and "nothing published under v2" in plan.note
    # a plan made for v1 handed to another model is not applied: everything is embedded
    v1_plan = plan_reuse(published, shards, loaded)
    assert v1_plan.reused_shards > 0
    merged = embed_shards(impostor, shards, batch_size=4, device="cpu", reuse=v1_plan)
    assert merged.reused_rows == 0
    assert not np.array_equal(merged.embeddings, embed_shards(loaded, shards, batch_size=4, device="cpu").embeddings)


def test_a_model_folder_plans_like_the_loaded_model(staged, loaded, model_dir):
    """The pipeline plans from the model folder (card + weights hash, no torch load)."""
    from radsim.model.publish import plan_reuse

    shards, published, _ = staged
    by_dir, by_model = plan_reuse(published, shards, model_dir), plan_reuse(published, shards, loaded)
    assert by_dir.embed == by_model.embed and by_dir.fingerprint == by_model.fingerprint
    assert np.array_equal(by_dir.mask, by_model.mask)


def test_task_runner_embeds_only_the_new_shard_groups(prefect_harness, staged, model_dir, full_table, tmp_path):
    """The pipeline's mapped path: the plan stays in this process, only shard names go to the runner."""
    from radsim.flows.publish_embeddings import run_embed_shards
    from radsim.model.publish import plan_reuse, publish_embedded

    shards, published, a_shards = staged
    plan = plan_reuse(published, shards, model_dir)
    loaded, merged = run_embed_shards(str(model_dir), str(shards), runner="threads", workers=2, reuse=plan,
                                      shards_per_task=2, batch_size=4, device="cpu")
    assert merged.reused_shards == len(a_shards) and merged.rows - merged.reused_rows == sum(
        1 for s in pq.read_table(shards / "manifest.parquet", columns=["shard"]).column("shard").to_pylist()
        if s not in a_shards)
    publish_embedded(merged, loaded, tmp_path / "pub")
    assert _table(tmp_path / "pub").equals(full_table)


def test_a_shard_whose_published_rows_differ_from_the_manifest_is_embedded_again(staged, loaded, full_table,
                                                                                  tmp_path):
    """A published row with another split than the manifest's (or a missing row) disqualifies its shard."""
    from radsim.model.publish import embed_shards, plan_reuse, publish_embedded

    shards, published, a_shards = staged
    doc = json.loads((published / "_manifests" / "v1.json").read_text())
    reference = embed_shards(loaded, shards, batch_size=4, device="cpu", only=a_shards)
    first_of_second = len(reference.exam_keys) - sum(1 for s in pq.read_table(shards / "manifest.parquet")
                                                      .column("shard").to_pylist() if s in a_shards[1:])
    reference.splits[0] = "val" if reference.splits[0] != "val" else "test"  # a row of A's first shard
    for name in ("exam_keys", "image_index", "splits", "view_positions", "label_values"):
        del getattr(reference, name)[first_of_second]  # A's second shard loses its first row
    reference.embeddings = np.delete(reference.embeddings, first_of_second, axis=0)
    odd = tmp_path / "odd"
    publish_embedded(reference, loaded, odd)
    assert json.loads((odd / "_manifests" / "v1.json").read_text())["shards"] == doc["shards"]  # digests alike
    plan = plan_reuse(odd, shards, loaded)
    assert plan.embed[:2] == a_shards[:2] and plan.reused_shards == len(a_shards) - 2
    merged = embed_shards(loaded, shards, batch_size=4, device="cpu", reuse=plan)
    assert _publish(merged, loaded, tmp_path / "fresh").equals(full_table)
