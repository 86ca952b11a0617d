"""Embedding split into groups of shards (issue 8): same rows, same order, same vectors as one process.

The split/assemble logic is tested without Prefect through `embed_shards(..., submit=...)`; one
test runs the publish_embeddings flow with its shard groups on a thread-pool task runner.
"""
from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

MAXCOUNT = 7  # 40 exams (42 images) → 6 shards


@pytest.fixture(scope="module")
def many_shards(cohort, tmp_path_factory) -> Path:
    """The publish cohort re-sharded 7 samples per shard, so there is something to split."""
    from radsim.data_contracts import demo_keyer
    from radsim.imaging.shards import write_shards

    out = tmp_path_factory.mktemp("many-shards") / "shards"
    write_shards(cohort.exams, cohort.labels, out, keyer=demo_keyer(), image_size=64, maxcount=MAXCOUNT,
                 progress=False)
    return out


@pytest.fixture(scope="module")
def loaded(model_dir):
    from radsim.model.checkpoint import load_model

    return load_model(model_dir)


def _inline(loaded, shard_dir, calls: list[list[str]] | None = None):
    """A `submit` that embeds at once in this process, recording the groups it was given."""
    from radsim.model.publish import embed_part

    def submit(names: list[str]) -> Future:
        if calls is not None:
            calls.append(list(names))
        fut: Future = Future()
        fut.set_result(embed_part(loaded, shard_dir, names, batch_size=4, device="cpu"))
        return fut

    return submit


def _assert_same(a, b) -> None:
    assert a.exam_keys == b.exam_keys and a.image_index == b.image_index
    assert a.splits == b.splits and a.view_positions == b.view_positions and a.label_values == b.label_values
    assert a.key_id == b.key_id and a.vocabulary == b.vocabulary
    assert a.embeddings.dtype == np.float32 and np.array_equal(a.embeddings, b.embeddings)  # bitwise


@pytest.mark.parametrize("shards_per_task", [1, 4])
def test_split_embedding_equals_one_process_bitwise(loaded, many_shards, shards_per_task):
    from radsim.model.publish import embed_shards, shard_groups

    plain = embed_shards(loaded, many_shards, batch_size=4, device="cpu")
    calls: list[list[str]] = []
    split = embed_shards(loaded, many_shards, batch_size=4, device="cpu", shards_per_task=shards_per_task,
                         submit=_inline(loaded, many_shards, calls), window=2)
    manifest = pq.read_table(many_shards / "manifest.parquet")
    names = list(dict.fromkeys(manifest.column("shard").to_pylist()))
    assert len(names) == 6 and calls == shard_groups(many_shards, shards_per_task)
    assert [n for group in calls for n in group] == names  # every shard once, in manifest order
    assert plain.rows == manifest.num_rows >= 40  # some exams have two images
    assert plain.exam_keys == manifest.column("exam_key").to_pylist()  # manifest order
    _assert_same(plain, split)


def test_parts_finishing_out_of_order_are_assembled_in_manifest_order(loaded, many_shards):
    from radsim.model.publish import embed_part, embed_shards

    finished: list[str] = []

    def work(names: list[str], delay: float):
        time.sleep(delay)
        part = embed_part(loaded, many_shards, names, batch_size=4, device="cpu")
        finished.append(names[0])
        return part

    groups_seen = []
    with ThreadPoolExecutor(max_workers=6) as pool:
        def submit(names: list[str]) -> Future:
            groups_seen.append(names[0])
            return pool.submit(work, names, 0.35 - 0.05 * len(groups_seen))  # later groups finish first

        split = embed_shards(loaded, many_shards, batch_size=4, device="cpu", submit=submit, window=6)
    assert finished != groups_seen  # they really completed out of order
    _assert_same(embed_shards(loaded, many_shards, batch_size=4, device="cpu"), split)


def test_batches_do_not_depend_on_how_shards_are_grouped(loaded, many_shards):
    """Direct forward passes per shard give the vectors the one-process path publishes."""
    from radsim.model.publish import embed_part

    whole = embed_part(loaded, many_shards, None, batch_size=5, device="cpu")
    names = whole.shards
    pieces = [embed_part(loaded, many_shards, [n], batch_size=5, device="cpu") for n in names]
    assert [k for p in pieces for k in p.exam_keys] == whole.exam_keys
    assert np.array_equal(np.concatenate([p.embeddings for p in pieces]), whole.embeddings)


def test_empty_shard_folder_gives_zero_rows_both_ways(loaded, many_shards, tmp_path):
    from radsim.model.publish import embed_shards

    manifest = pq.read_table(many_shards / "manifest.parquet")
    empty = tmp_path / "empty"
    empty.mkdir()
    pq.write_table(manifest.slice(0, 0), empty / "manifest.parquet")  # keeps the schema's radsim.* metadata
    calls: list[list[str]] = []
    plain = embed_shards(loaded, empty, device="cpu")
    split = embed_shards(loaded, empty, device="cpu", submit=_inline(loaded, empty, calls))
    assert calls == [] and plain.rows == split.rows == 0
    assert plain.embeddings.shape == split.embeddings.shape == (0, loaded.card.embedding_dim)
    _assert_same(plain, split)


def test_a_part_from_another_model_or_other_shards_is_refused(loaded, many_shards, model_factory, tmp_path):
    from radsim.data_contracts import RadsimError, UsageError
    from radsim.model.checkpoint import load_model
    from radsim.model.publish import embed_part, embed_shards

    other = load_model(model_factory(tmp_path / "v2", version="v2"))

    def wrong_model(names: list[str]) -> Future:
        fut: Future = Future()
        fut.set_result(embed_part(other, many_shards, names, batch_size=4, device="cpu"))
        return fut

    with pytest.raises(RadsimError, match="workers must see the same model folder"):
        embed_shards(loaded, many_shards, device="cpu", submit=wrong_model)

    def wrong_shards(names: list[str]) -> Future:
        fut: Future = Future()
        fut.set_result(embed_part(loaded, many_shards, names[:0] or ["shard-000005.tar"], batch_size=4, device="cpu"))
        return fut

    with pytest.raises(RadsimError, match="returned shards"):
        embed_shards(loaded, many_shards, device="cpu", submit=wrong_shards)
    with pytest.raises(UsageError, match="shards-per-task"):
        embed_shards(loaded, many_shards, device="cpu", shards_per_task=0, submit=wrong_shards)
    with pytest.raises(UsageError, match="does not list"):
        embed_part(loaded, many_shards, ["shard-999999.tar"], device="cpu")


def test_a_shard_shorter_than_its_manifest_rows_is_refused(loaded, many_shards, tmp_path):
    import shutil
    import tarfile

    from radsim.data_contracts import UsageError
    from radsim.model.publish import embed_part

    copy = tmp_path / "shards"
    shutil.copytree(many_shards, copy)
    victim = copy / "shard-000001.tar"
    with tarfile.open(victim) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(victim, "w") as tar:  # drop the last sample (its png and json)
        last = members[-1][0].name.split(".")[0]
        for m, data in members:
            if not m.name.startswith(last):
                import io

                tar.addfile(m, io.BytesIO(data))
    with pytest.raises(UsageError, match="does not match"):
        embed_part(loaded, copy, ["shard-000001.tar"], device="cpu")


def test_flow_with_shard_groups_on_a_task_runner_publishes_the_same_table(prefect_harness, cohort, model_dir,
                                                                         many_shards, tmp_path, capsys):
    from radsim.flows.cli import main
    from radsim.model.publish import publish

    publish(model_dir, many_shards, tmp_path / "plain", batch_size=4, device="cpu")
    assert main(["publish", "--model", str(model_dir), "--shards", str(many_shards), "--out", str(tmp_path / "split"),
                 "--task-runner", "threads", "--workers", "2", "--shards-per-task", "2", "--batch-size", "4",
                 "--no-progress"]) == 0
    assert "published model version v1" in capsys.readouterr().out
    plain = pq.read_table(tmp_path / "plain" / "embeddings" / "v1")
    split = pq.read_table(tmp_path / "split" / "embeddings" / "v1")
    assert plain.num_rows >= 40 and plain.equals(split)  # embeddings included, bitwise
    assert main(["publish", "--model", str(model_dir), "--shards", str(many_shards), "--out", str(tmp_path / "x"),
                 "--task-runner", "threads", "--shards-per-task", "0"]) == 2


def test_cli_refuses_before_starting_a_task_runner(cohort, model_factory, tmp_path, capsys):
    """Bad model, shards or options exit 2 with one line, without starting a flow (no engine needed)."""
    from radsim.flows.cli import main

    base = ["publish", "--shards", str(cohort.shards), "--out", str(tmp_path / "o"), "--task-runner", "threads"]
    assert main([*base, "--model", str(tmp_path / "nope")]) == 2
    bad = model_factory(tmp_path / "m", key_id="0123456789ab")
    assert main([*base, "--model", str(bad)]) == 2
    assert main([*base, "--model", str(bad), "--shards-per-task", "0"]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint" in err and "different pseudonymisation key" in err and "--shards-per-task" in err
    assert not (tmp_path / "o").exists()
