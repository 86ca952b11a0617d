"""`radsim run`: usage errors are one line and exit 2, before Prefect starts."""
from __future__ import annotations

from radsim.flows.cli import main


def test_missing_inbox_exits_2(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope"), "--warehouse", str(tmp_path / "wh"), "--demo-key"]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "does not exist" in err and "Traceback" not in err


def _run_with_config(tmp_path, text: str) -> int:
    (tmp_path / "inbox").mkdir()
    toml = tmp_path / "radsim.toml"
    toml.write_text(text)
    return main(["run", str(tmp_path / "inbox"), "--warehouse", str(tmp_path / "wh"), "--demo-key",
                 "--config", str(toml)])


def test_bad_config_key_exits_2_naming_it(tmp_path, capsys):
    assert _run_with_config(tmp_path, '[model]\nbackbone = "small"\nmax_step = 3\n') == 2
    assert "model.max_step" in capsys.readouterr().err


def test_bad_cron_exits_2(tmp_path, capsys):
    assert _run_with_config(tmp_path, '[schedule]\ncron = "at two every night"\n') == 2
    assert "schedule.cron" in capsys.readouterr().err


def test_no_key_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RADSIM_ID_KEY", raising=False)
    (tmp_path / "inbox").mkdir()
    assert main(["run", str(tmp_path / "inbox"), "--warehouse", str(tmp_path / "wh")]) == 2
    assert "RADSIM_ID_KEY" in capsys.readouterr().err
    assert not (tmp_path / "wh").exists()


def test_run_help_is_quick_and_mentions_ledger(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "ledger" in capsys.readouterr().out


def test_server_down_names_the_url(tmp_path, capsys, monkeypatch):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    url = f"http://127.0.0.1:{port}/api"
    monkeypatch.setenv("PREFECT_API_URL", url)
    (tmp_path / "inbox").mkdir()
    assert main(["run", str(tmp_path / "inbox"), "--warehouse", str(tmp_path / "wh"), "--demo-key"]) == 1
    assert url in capsys.readouterr().err
