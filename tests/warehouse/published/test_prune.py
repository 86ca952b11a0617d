"""`radsim prune`: old versions go, the current one never; atomic, crash-safe, and kind to readers (issue 15)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import pandas as pd
import pytest

from radsim.data_contracts import UsageError
from radsim.flows import cli
from radsim.warehouse import published as P

ROWS = {"v1": 6, "v2": 7, "v3": 8}


@pytest.fixture
def three(tmp_path, publish):
    """v1 current (published first), v2 and v3 published beside it; v2 has index caches."""
    out = tmp_path / "published"
    publish(out, ROWS["v1"], 1, "v1", make_current=True)
    publish(out, ROWS["v2"], 2, "v2")
    publish(out, ROWS["v3"], 3, "v3")
    index = P.default_index_dir(out)
    index.mkdir()
    for path in [*P.index_cache_paths(index, "v2")[:2], *P.index_cache_paths(index, "v1")[:2]]:
        path.write_text("cache")
    return out


def _state(out):
    """What is on disk: folders, records, the versions table's rows, the current version."""
    return (sorted(P.version_folders(out)), sorted(p.stem for p in (out / "_manifests").glob("*.json")),
            P.read_versions(out).column("model_version").to_pylist(), P.current_version(out))


def test_keep_n_removes_the_oldest_but_never_the_current_version(three):
    result = P.prune_versions(three, 1)
    assert result.removed == ["v2"] and result.kept == ["v1", "v3"] and result.current == "v1"
    assert _state(three) == (["v1", "v3"], ["v1", "v3"], ["v1", "v3"], "v1")
    index = P.default_index_dir(three)
    assert not any(p.exists() for p in P.index_cache_paths(index, "v2"))
    assert P.index_cache_paths(index, "v1")[0].exists()  # the kept version's cache stays
    for v in ("v1", "v3"):
        assert P.open_version(three, v, verify="full").record["rows"] == ROWS[v]
    assert [p.name for p in P.staging_dir(three).iterdir()] == ["publish.lock"]  # no journal, no trash
    assert P.prune_versions(three, 1).removed == []  # nothing more to do


def test_a_prune_that_would_hit_the_current_version_is_refused(three):
    with pytest.raises(UsageError, match="refused: v1 is the current version"):
        P.prune_versions(three, remove=["v1"])
    with pytest.raises(UsageError, match="at least 1"):
        P.prune_versions(three, 0)
    assert _state(three) == (["v1", "v2", "v3"], ["v1", "v2", "v3"], ["v1", "v2", "v3"], "v1")
    assert P.prune_versions(three, remove=["v3"]).removed == ["v3"]


def test_cli_prune_dry_run_and_refusal(three, capsys):
    assert cli.main(["prune", str(three), "--keep", "1", "--dry-run"]) == 0
    assert "(dry run) prune: removed 1 version(s) (v2)" in capsys.readouterr().out
    assert len(P.version_folders(three)) == 3
    assert cli.main(["prune", str(three), "--remove", "v1"]) == 2
    assert "refused" in capsys.readouterr().err
    assert cli.main(["prune", str(three), "--keep", "2"]) == 0  # v2 and v3 are the newest two, v1 current
    assert sorted(P.version_folders(three)) == ["v1", "v2", "v3"]
    assert cli.main(["prune", str(three), "--keep", "1"]) == 0
    assert sorted(P.version_folders(three)) == ["v1", "v3"]


def test_readers_of_the_current_version_read_whole_tables_during_prunes(tmp_path, publish):
    out = tmp_path / "published"
    publish(out, 30, 1, "v1", make_current=True)
    seen, errors, stop = [], [], threading.Event()

    def reader():
        while not stop.is_set():
            try:
                seen.append(P.open_version(out, verify="quick").read().num_rows)
                seen.append(len(pd.read_parquet(out / "embeddings" / P.current_version(out))))
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(2, 8):
            publish(out, 10 + i, i, f"v{i}")
            P.prune_versions(out, 1)
    finally:
        stop.set()
        thread.join()
    assert not errors and seen and set(seen) == {30}
    assert sorted(P.version_folders(out)) == ["v1", "v7"]


def test_a_reader_of_a_pruned_version_gets_a_clear_error_not_part_of_a_table(three):
    opened = P.open_version(three, "v2")
    P.prune_versions(three, remove=["v2"])
    with pytest.raises(UsageError, match="pruned or republished while it was read"):
        opened.read()


KILLED_PRUNE = textwrap.dedent("""
    import os, signal, sys
    from radsim.warehouse.published import prune_versions

    calls, real, k = [0], os.replace, int(sys.argv[2])

    def dying(a, b):
        calls[0] += 1
        if calls[0] == k:
            os.kill(os.getpid(), signal.SIGKILL)  # before the k-th rename of the prune
        return real(a, b)

    os.replace = dying
    prune_versions(sys.argv[1], 1)
    print("finished", calls[0])
""")


@pytest.mark.parametrize("k", range(1, 8))
def test_a_prune_killed_at_each_rename_is_finished_by_the_next_writer(three, k):
    proc = subprocess.run([sys.executable, "-c", KILLED_PRUNE, str(three), str(k)], capture_output=True, text=True,
                          timeout=120)
    killed = proc.returncode == -9
    assert killed or proc.stdout.startswith("finished"), proc.stderr
    # whatever the kill left, the current version reads whole and the versions table names only
    # versions whose folder and record are both there
    assert P.open_version(three, "v1", verify="full").record["rows"] == ROWS["v1"]
    folders, records, listed, current = _state(three)
    assert current == "v1" and set(listed) <= set(folders) & set(records)
    result = P.prune_versions(three, 1)  # the next writer finishes it (or finds it done)
    assert _state(three) == (["v1", "v3"], ["v1", "v3"], ["v1", "v3"], "v1")
    assert killed or result.removed == []
    assert not any(p.exists() for p in P.index_cache_paths(P.default_index_dir(three), "v2"))
    assert [p.name for p in P.staging_dir(three).iterdir()] == ["publish.lock"]


def test_a_publish_after_a_killed_prune_finishes_it_first(three, publish):
    proc = subprocess.run([sys.executable, "-c", KILLED_PRUNE, str(three), "3"], capture_output=True, timeout=120)
    assert proc.returncode == -9
    publish(three, 9, 9, "v4")
    assert sorted(P.version_folders(three)) == ["v1", "v3", "v4"]
    assert P.read_versions(three).column("model_version").to_pylist() == ["v1", "v3", "v4"]
