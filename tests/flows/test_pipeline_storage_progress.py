"""The pipeline's storage step: a mirrored warehouse reports its transfers on the console unless quiet."""

def test_storage_progress_lines_reach_the_console(tmp_path, capsys):
    from radsim.flows.pipeline import _storage
    from radsim.flows.run_config import RunConfig

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with _storage(str(inbox), "memory://radsim-storage-progress/wh", RunConfig(), quiet=False) as (_, warehouse):
        (warehouse / "note.txt").write_text("pushed back on success")
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert lines and all(line.startswith("      ") for line in lines)
