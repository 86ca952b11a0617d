"""Compaction: nightly one-exam increments do not fragment the shard folder (issue 15)."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from radsim.data_contracts import UsageError, demo_keyer
from radsim.imaging import shards as sh
from radsim.imaging.compaction import small_tail

from .test_shards import SIZE, assert_consistent, shard_samples, write_exams_csv

N = 30


@pytest.fixture
def inbox(tmp_path, make_png, phantom):
    """N one-image exams of N // 3 patients, as PNGs; exams_upto(k) writes the table of the first k."""
    src = tmp_path / "inbox"
    rows = []
    for i in range(N):
        make_png(src / f"img/{i}.png", density=phantom(seed=i))
        rows.append({"exam_id": f"EX{i:03d}", "patient_id": f"P{i % (N // 3)}", "image_uri": f"img/{i}.png",
                     "image_index": 0})

    def exams_upto(k: int):
        return write_exams_csv(src / f"exams-{k}.csv", rows[:k])

    return exams_upto


def _run(exams, out, **kw):
    kw.setdefault("compact_after", N)
    return sh.write_shards(exams, None, out, keyer=demo_keyer(), image_size=SIZE, progress=False, **kw)


def _layout(out):
    return sorted(p.name for p in out.glob("shard-*.tar"))


def test_thirty_one_exam_increments_compact_into_one_shard(inbox, tmp_path):
    out = tmp_path / "shards"
    for k in range(1, N):
        summary = _run(inbox(k), out)
        assert summary.counts.rows_in == summary.counts.rows_out + summary.counts.quarantined + summary.counts.skipped
        assert (summary.counts.rows_out, summary.counts.skipped) == (1, k - 1)
    assert len(_layout(out)) == N - 1 and summary.compaction.merged == []
    before_samples = {k: (s["png"], s["json"]) for k, s in shard_samples(out).items()}
    before_manifest = pq.read_table(out / sh.MANIFEST_FILE)
    splits = (out / "splits.parquet").read_bytes()

    last = _run(inbox(N), out)  # the 30th small shard: the tail is merged
    assert last.compaction.merged == [f"shard-{i:06d}.tar" for i in range(N)]
    assert last.compaction.written == [f"shard-{N:06d}.tar"] == _layout(out)
    assert "compaction: merged 30 small shards" in last.summary()
    manifest = assert_consistent(out)
    assert manifest.num_rows == N and set(manifest.column("shard").to_pylist()) == {f"shard-{N:06d}.tar"}
    # the same rows in the same order, the same bytes in every sample
    new_key = [r for r in manifest.column("sample_key").to_pylist() if r not in before_samples]
    assert manifest.column("sample_key").to_pylist()[:N - 1] == before_manifest.column("sample_key").to_pylist()
    assert len(new_key) == 1
    for name in manifest.column_names:
        if name != "shard":
            assert manifest.column(name).to_pylist()[:N - 1] == before_manifest.column(name).to_pylist(), name
    samples = shard_samples(out)
    assert all((samples[k]["png"], samples[k]["json"]) == v for k, v in before_samples.items())
    assert (out / "splits.parquet").read_bytes() == splits

    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = _run(inbox(N), out)  # a rerun changes nothing
    assert again.wrote_nothing and again.counts.skipped == N and again.compaction.merged == []
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes


def test_only_the_small_tail_is_merged_and_big_shards_stay(inbox, tmp_path):
    out = tmp_path / "shards"
    _run(inbox(8), out, maxcount=4, compact_after=0)  # two full shards of 4
    for k in range(9, 12):
        _run(inbox(k), out, maxcount=4, compact_after=0)
    manifest = pq.read_table(out / sh.MANIFEST_FILE)
    small = ["shard-000002.tar", "shard-000003.tar", "shard-000004.tar"]  # 1 sample of 4 each
    assert small_tail(manifest, out, 4, sh.DEFAULT_MAXSIZE) == small
    result = _run(inbox(12), out, maxcount=4, compact_after=4)
    assert result.compaction.merged == [*small, "shard-000005.tar"]
    assert _layout(out) == ["shard-000000.tar", "shard-000001.tar", "shard-000006.tar"]  # the full ones untouched
    assert pq.read_table(out / sh.MANIFEST_FILE).column("shard").to_pylist() == (
        ["shard-000000.tar"] * 4 + ["shard-000001.tar"] * 4 + ["shard-000006.tar"] * 4)
    assert_consistent(out)


def test_training_reads_the_same_data_from_either_layout(inbox, tmp_path):
    from radsim.model.data import load_split, read_shard_info

    fragmented, compacted = tmp_path / "fragmented", tmp_path / "compacted"
    for k in range(1, 13):
        _run(inbox(k), fragmented, compact_after=0)
        _run(inbox(k), compacted, compact_after=4)
    assert len(_layout(fragmented)) == 12 and len(_layout(compacted)) < 12
    for split in ("train", "val", "test"):
        a = load_split(read_shard_info(fragmented), split, views=None, labelled_only=False)
        b = load_split(read_shard_info(compacted), split, views=None, labelled_only=False)
        if split == "train":
            assert len(a) > 0
        assert a.keys == b.keys and a.groups == b.groups
        assert torch.equal(a.images, b.images)
        np.testing.assert_array_equal(a.labels, b.labels)


def test_compact_after_one_is_refused(inbox, tmp_path):
    with pytest.raises(UsageError, match="compact_after"):
        _run(inbox(2), tmp_path / "shards", compact_after=1)


KILLED = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from radsim.data_contracts import demo_keyer
    from radsim.imaging import shards as sh

    step = sys.argv[3]
    real_replace, real_unlink = os.replace, Path.unlink
    seen = {".tar": 0, "manifest.parquet": 0, "unlink": 0}

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def replace(a, b):
        real_replace(a, b)
        for end in (".tar", "manifest.parquet"):
            if str(b).endswith(end):
                seen[end] += 1
        # the increment's own shard and manifest come first; the compaction's are the second ones
        if step == "merged-shard-written" and seen[".tar"] == 2:
            die()  # step 1 done: the merged shard renamed into place, not yet in the manifest
        if step == "manifest-written" and seen["manifest.parquet"] == 2:
            die()  # step 2 done: the manifest names the merged shard, the old ones still on disk

    def unlink(self, missing_ok=False):
        if step == "old-shards-half-deleted" and self.name.startswith("shard-"):
            seen["unlink"] += 1
            if seen["unlink"] == 3:
                die()  # step 3 half done
        return real_unlink(self, missing_ok=missing_ok)

    os.replace, Path.unlink = replace, unlink
    sh.write_shards(sys.argv[1], None, sys.argv[2], keyer=demo_keyer(), image_size=int(sys.argv[4]), progress=False,
                    compact_after=5)
    print("finished")
""")


@pytest.mark.parametrize("step", ["merged-shard-written", "manifest-written", "old-shards-half-deleted"])
def test_a_compaction_killed_at_each_step_resumes(inbox, tmp_path, step):
    out = tmp_path / "shards"
    for k in range(1, 5):
        _run(inbox(k), out, compact_after=0)
    before = pq.read_table(out / sh.MANIFEST_FILE).column("sample_key").to_pylist()
    proc = subprocess.run([sys.executable, "-c", KILLED, str(inbox(5)), str(out), step, str(SIZE)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stdout + proc.stderr
    resumed = _run(inbox(5), out, compact_after=5)  # orphans removed, then the compaction done (or found done)
    manifest = assert_consistent(out)
    assert manifest.column("sample_key").to_pylist()[:4] == before and manifest.num_rows == 5
    assert len(_layout(out)) == 1
    counts = resumed.counts
    assert counts.rows_in == counts.rows_out + counts.quarantined + counts.skipped == 5
