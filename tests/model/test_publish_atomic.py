"""Atomic publication (DESIGN §12): a publish killed midway leaves the previous version intact and readable."""
from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from radsim.warehouse import published as P
from radsim.warehouse.published import write as W

D = 8


def _readers_see(out: Path) -> dict[str, int]:
    """Row counts as pyarrow, polars and duckdb read the table folder (hive partitions)."""
    import duckdb
    import polars as pl
    import pyarrow.dataset as ds

    glob = str(out / "embeddings" / "**" / "*.parquet")
    con = duckdb.connect()
    return {
        "pyarrow": ds.dataset(out / "embeddings", format="parquet", partitioning="hive").count_rows(),
        "polars": pl.read_parquet(glob, hive_partitioning=True).height,
        "duckdb": con.execute(f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning=true)").fetchone()[0],
        "duckdb_fixed": con.execute(f"SELECT count(*) FROM (SELECT embedding::FLOAT[{D}] AS e FROM "
                                    f"read_parquet('{glob}', hive_partitioning=true))").fetchone()[0],
    }


def _intact(out: Path, rows: int, checksum: str) -> None:
    version = P.open_version(out, "v1", verify="full")  # record present, sha256 equal
    assert version.checksum == checksum and version.record["rows"] == rows
    assert set(_readers_see(out).values()) == {rows}
    assert all(p.suffix == ".parquet" for p in (out / "embeddings").rglob("*") if p.is_file())


def test_publish_that_fails_after_staging_leaves_the_old_version(tmp_path, monkeypatch, publish_synthetic):
    first = publish_synthetic(tmp_path, 50, seed=1)
    original = P.write_parts

    def write_then_die(*args, **kwargs):
        original(*args, **kwargs)
        raise RuntimeError("killed after staging")

    monkeypatch.setattr(W, "write_parts", write_then_die)
    with pytest.raises(RuntimeError, match="killed after staging"):
        publish_synthetic(tmp_path, 70, seed=2)
    _intact(tmp_path, 50, first.record["checksum"])
    monkeypatch.setattr(W, "write_parts", original)
    second = publish_synthetic(tmp_path, 70, seed=2)
    assert second.replaced and set(_readers_see(tmp_path).values()) == {70}
    assert [p.name for p in P.staging_dir(tmp_path).iterdir()] == ["publish.lock"]
    assert not P.staging_dir(tmp_path).is_relative_to(tmp_path.resolve())  # staged outside the published folder


def test_publish_that_fails_at_the_swap_leaves_the_old_version(tmp_path, monkeypatch, publish_synthetic):
    first = publish_synthetic(tmp_path, 40, seed=1)

    def no_swap(a, b):
        raise OSError("disk went away")

    monkeypatch.setattr(W, "_exchange", no_swap)
    with pytest.raises(OSError):
        publish_synthetic(tmp_path, 60, seed=3)
    _intact(tmp_path, 40, first.record["checksum"])


KILLED_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import pyarrow.parquet as pq
    from radsim.warehouse.published import write as W

    out, ready = Path(sys.argv[1]), Path(sys.argv[2])

    def slow_parts(table, folder, **kw):
        folder.mkdir(parents=True, exist_ok=True)
        with pq.ParquetWriter(folder / "part-00000-killed.parquet", table.schema) as w:
            w.write_table(table.slice(0, 10))  # half a file on disk ...
            ready.write_text("writing")
            time.sleep(600)                     # ... when SIGKILL arrives

    W.write_parts = slow_parts
    sys.path.insert(0, sys.argv[3])
    from helper import publish
    publish(out, 200, 5)
""")


def test_publish_killed_with_sigkill_mid_write(tmp_path, publish_synthetic):
    first = publish_synthetic(tmp_path / "pub", 30, seed=1)
    helper = tmp_path / "helper"
    helper.mkdir()
    # the subprocess reuses _publish_synthetic's logic through a tiny module
    (helper / "helper.py").write_text(
        textwrap.dedent(f"""
        import numpy as np
        from radsim.warehouse import published as P
        D = {D}
        def publish(out, n, seed):
            rng = np.random.default_rng(seed)
            emb = rng.standard_normal((n, D)).astype(np.float32)
            findings = ["no_finding", "cardiomegaly"]
            table = P.embeddings_table(exam_keys=[f"k{{i}}" for i in range(n)], image_index=[0] * n,
                splits=["test"] * n, view_positions=["PA"] * n, embeddings=emb, label_values=[[1, 0]] * n,
                findings=findings, model_version="v1", key_id="demo-test")
            meta = P.table_metadata_for(model_version="v1", key_id="demo-test", findings=findings, vocabulary_name="t",
                vocabulary_version="1", model_card={{}})
            P.publish_table(table, out, model_version="v1", embedding_dim=D, extra_metadata=meta)
    """)
    )
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path / "pub"), str(ready), str(helper)])
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None, "the writer exited before it began writing"
            assert time.monotonic() < deadline, "the writer never started writing"
            time.sleep(0.05)
        staged = list(P.staging_dir(tmp_path / "pub").rglob("part-*.parquet"))
        assert staged  # a partial file really exists, outside embeddings/
        _intact(tmp_path / "pub", 30, first.record["checksum"])  # readers ignore it while it is written
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    _intact(tmp_path / "pub", 30, first.record["checksum"])
    again = publish_synthetic(tmp_path / "pub", 45, seed=4)  # the next publish cleans up and succeeds
    assert again.replaced and set(_readers_see(tmp_path / "pub").values()) == {45}
    assert not list(P.staging_dir(tmp_path / "pub").rglob("*.parquet"))


def test_readers_never_see_a_partial_table_while_versions_are_swapped(tmp_path, publish_synthetic):
    """A reader gets the whole old table, the whole new one, or "no such file" (retry): never a mix."""
    publish_synthetic(tmp_path, 100, seed=0)
    seen: list[int] = []
    retries: list[BaseException] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader():
        folder = P.version_dir(tmp_path, "v1")
        while not stop.is_set():
            try:
                table = pq.read_table(folder)
                emb = P.embedding_matrix(table)
                assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
                seen.append(table.num_rows)
            except FileNotFoundError as exc:  # listed before a swap, opened after it
                retries.append(exc)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(8):
            publish_synthetic(tmp_path, 200 if i % 2 == 0 else 100, seed=i)
    finally:
        stop.set()
        t.join()
    assert not errors and seen and set(seen) <= {100, 200}, (errors[:3], len(retries))


def test_a_second_version_sits_beside_the_first(tmp_path, publish_synthetic):
    publish_synthetic(tmp_path, 20, seed=1, version="v1")
    publish_synthetic(tmp_path, 25, seed=2, version="v2")
    assert sorted(p.name for p in (tmp_path / "embeddings").iterdir()) == ["v1", "v2"]
    assert _readers_see(tmp_path)["polars"] == 45
    assert P.resolve_version(tmp_path, None) == "v2"
    assert [r["model_version"] for r in P.published_versions(tmp_path)] == ["v1", "v2"]
