"""fsspec storage: a local mirror of a remote folder, pushed back only after a run succeeds."""
from __future__ import annotations

import pytest

from radsim.data_contracts import UsageError
from radsim.warehouse.storage import Mirror, commit_tier, filesystem, is_remote, local_path, open_folder


@pytest.fixture
def remote(memory_root):
    """A folder inside a fresh memory:// root (tests/conftest.py)."""
    root, fs = memory_root
    return f"{root}/wh", fs


@pytest.fixture
def no_s3fs():
    """These tests show what happens without the s3 backend: skipped where s3fs is installed."""
    import importlib.util

    if importlib.util.find_spec("s3fs") is not None:
        pytest.skip("s3fs is installed here, so its absence cannot be shown")


def _put(fs, uri: str, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        with fs.open(f"{uri}/{rel}", "wb") as fh:
            fh.write(data)


def test_locations():
    assert is_remote("s3://b/x") and is_remote("memory://x") and not is_remote("/data/wh")
    assert not is_remote("file:///data/wh") and str(local_path("file:///data/wh")) == "/data/wh"
    assert commit_tier("ledger.parquet") > commit_tier("models/current.json") > commit_tier("shards/a.tar")
    assert commit_tier("shards/manifest.parquet") == commit_tier("published/embeddings/_manifests/v1.json") == 1
    assert commit_tier("shards/shard-000000.tar") == 0


def test_missing_backend_and_unknown_protocol_are_one_line(no_s3fs):
    with pytest.raises(UsageError) as err:
        filesystem("s3://hospital-bucket/radsim")
    message = str(err.value)
    assert "\n" not in message and "pip install s3fs" in message and "s3://" in message
    with pytest.raises(UsageError, match="unknown storage protocol nosuchfs://"):
        filesystem("nosuchfs://x/y")


def test_local_paths_are_used_in_place_one_writer_at_a_time(tmp_path):
    with open_folder(str(tmp_path / "wh")) as folder:
        assert folder == tmp_path / "wh"
        with pytest.raises(UsageError, match="another radsim run is writing"):
            with open_folder(str(tmp_path / "wh")):
                pass
        with open_folder(str(tmp_path / "wh"), writeback=False):  # readers are not locked out
            pass
    with open_folder(str(tmp_path / "wh")):  # released
        pass
    with pytest.raises(UsageError, match="does not exist"):
        with open_folder(str(tmp_path / "nope"), must_exist=True):
            pass


def test_pull_edit_push_round_trip_commits_last(remote, tmp_path):
    uri, fs = remote
    _put(fs, uri, {"ledger.parquet": b"L1", "shards/shard-000000.tar": b"T0", "old.txt": b"gone soon"})
    order: list[str] = []
    real_put = fs.put_file

    def spy(lpath, rpath, **kw):
        order.append(rpath.rsplit("/wh/", 1)[1])
        return real_put(lpath, rpath, **kw)

    fs.put_file = spy
    try:
        with open_folder(uri) as folder:
            assert (folder / "ledger.parquet").read_bytes() == b"L1"
            (folder / "shards" / "shard-000001.tar").write_bytes(b"T1")
            (folder / "ledger.parquet").write_bytes(b"L2")
            (folder / "old.txt").unlink()
            (folder / "shards" / ".radsim-shard.lock").write_bytes(b"")  # machine-local: never pushed
    finally:
        del fs.put_file
    assert order == ["shards/shard-000001.tar", "ledger.parquet"]  # data first, the ledger last
    assert fs.cat(f"{uri}/ledger.parquet") == b"L2" and fs.cat(f"{uri}/shards/shard-000001.tar") == b"T1"
    assert not fs.exists(f"{uri}/old.txt") and not fs.exists(f"{uri}/shards/.radsim-shard.lock")


def test_a_failed_run_pushes_nothing_and_the_next_pull_drops_its_partial_work(remote):
    uri, fs = remote
    _put(fs, uri, {"ledger.parquet": b"L1"})
    with pytest.raises(RuntimeError):
        with open_folder(uri) as folder:
            (folder / "shards").mkdir()
            (folder / "shards" / "partial.tar").write_bytes(b"half")
            (folder / "ledger.parquet").write_bytes(b"L-crashed")
            raise RuntimeError("crash mid-run")
    assert fs.find(uri) == [f"/{uri.split('://', 1)[1]}/ledger.parquet"] and fs.cat(f"{uri}/ledger.parquet") == b"L1"
    with open_folder(uri, writeback=False) as folder:
        assert (folder / "ledger.parquet").read_bytes() == b"L1"  # the local edit is undone
        assert not (folder / "shards" / "partial.tar").exists()


def test_pull_fetches_only_what_changed_remotely(remote, tmp_path):
    uri, fs = remote
    _put(fs, uri, {"a.bin": b"a" * 10, "b.bin": b"b" * 10})
    mirror = Mirror(uri, tmp_path / "m")
    assert mirror.pull()["fetched"] == 2
    assert mirror.pull()["fetched"] == 0
    _put(fs, uri, {"b.bin": b"B" * 10})  # same size, rewritten
    assert mirror.pull()["fetched"] == 1 and (tmp_path / "m" / "b.bin").read_bytes() == b"B" * 10


def test_one_mirror_one_run_and_only_its_owner_reads_it(remote):
    uri, _ = remote
    with open_folder(uri) as folder:
        assert folder.stat().st_mode & 0o077 == 0 and folder.parent.stat().st_mode & 0o077 == 0
        with pytest.raises(UsageError, match="another radsim run"):
            with open_folder(uri):
                pass


def test_radsim_shard_writes_to_a_remote_folder_like_to_a_local_one(remote, tmp_path):
    from radsim.data_contracts import load_contract, write_parquet_atomic
    from radsim.data_contracts.ingest import ingest_manifests
    from radsim.flows.cli import main
    from radsim.synthetic import generate_cohort

    uri, fs = remote
    cohort = generate_cohort(tmp_path / "cohort", exams=6, seed=2, image_size=64, progress=False)
    exams = write_parquet_atomic(ingest_manifests([cohort.exams_path]).exams, tmp_path / "exams.parquet",
                                 load_contract("exams"))
    common = ["shard", "--exams", str(exams), "--image-size", "32", "--demo-key", "--no-progress"]
    assert main([*common, "--out", f"{uri}/shards"]) == 0
    assert main([*common, "--out", str(tmp_path / "local-shards")]) == 0
    local = sorted(p.relative_to(tmp_path / "local-shards").as_posix() for p in (tmp_path / "local-shards").rglob("*")
                   if p.is_file() and not p.name.endswith(".lock"))
    remote_files = sorted(name.split("/shards/", 1)[1] for name in fs.find(f"{uri}/shards"))
    assert remote_files == local and "manifest.parquet" in remote_files
    tar = next(name for name in local if name.endswith(".tar"))
    assert fs.cat(f"{uri}/shards/{tar}") == (tmp_path / "local-shards" / tar).read_bytes()

    before = {name: fs.info(name)["created"] for name in fs.find(f"{uri}/shards")}
    assert main([*common, "--out", f"{uri}/shards"]) == 0  # nothing new: nothing rewritten remotely
    assert {name: fs.info(name)["created"] for name in fs.find(f"{uri}/shards")} == before


def test_push_then_pull_fetches_nothing_and_a_lost_snapshot_forgets_no_delete(remote, tmp_path):
    uri, fs = remote
    _put(fs, uri, {"a.bin": b"a", "b.bin": b"b"})
    mirror = Mirror(uri, tmp_path / "m")
    mirror.pull()
    (tmp_path / "m" / "c.bin").write_bytes(b"c")
    (tmp_path / "m" / "a.bin").write_bytes(b"A")
    assert mirror.push() == {"uploaded": 2, "deleted": 0}
    assert mirror.pull()["fetched"] == 0  # what this machine pushed is not fetched back
    (tmp_path / "m" / ".radsim-mirror.json").write_text("{not json")
    (tmp_path / "m" / "b.bin").unlink()
    assert mirror.push()["deleted"] == 1 and not fs.exists(f"{uri}/b.bin")


def test_a_push_cut_short_during_its_deletes_is_finished_before_the_next_pull(remote, tmp_path, monkeypatch):
    uri, fs = remote
    _put(fs, uri, {"published/v/part-old.parquet": b"old", "published/_manifests/v.json": b"old"})
    mirror = Mirror(uri, tmp_path / "m")
    mirror.pull()
    (tmp_path / "m" / "published" / "v" / "part-old.parquet").unlink()
    (tmp_path / "m" / "published" / "v" / "part-new.parquet").write_bytes(b"new")
    (tmp_path / "m" / "published" / "_manifests" / "v.json").write_bytes(b"new")
    monkeypatch.setattr(Mirror, "finish_deletes", lambda self: (_ for _ in ()).throw(ConnectionError("lost")))
    with pytest.raises(ConnectionError):
        mirror.push()
    assert fs.cat(f"{uri}/published/_manifests/v.json") == b"new"  # the commit file was up
    assert fs.exists(f"{uri}/published/v/part-old.parquet")  # ...the delete was not
    monkeypatch.undo()
    assert Mirror(uri, tmp_path / "m").pull()["finished_deletes"] == 1
    assert sorted(fs.find(f"{uri}/published/v")) == [fs._strip_protocol(f"{uri}/published/v/part-new.parquet")]


def test_radsim_run_on_a_missing_backend_is_one_line_before_prefect_starts(no_s3fs, capsys):
    from radsim.flows.cli import main

    assert main(["run", "s3://hospital/inbox", "--warehouse", "s3://hospital/wh", "--demo-key"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install s3fs" in err and "Traceback" not in err
