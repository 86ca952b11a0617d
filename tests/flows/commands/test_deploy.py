"""`radsim deploy`: the schedules come from [schedule] only, and the cron strings are written in one place."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from radsim.flows.cli import main
from radsim.flows.run_config import ScheduleSection

REPO = Path(__file__).resolve().parents[3]
HOME = "flows/run_config.py"  # the one file that may write the schedules' cron strings
CRON_LITERAL = re.compile(r"""["'`]\s*([0-9*/,\-]+(?:\s+[0-9*/,\-A-Za-z]+){4})\s*["'`]""")


def _repo_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split()
    return [REPO / name for name in listed if (REPO / name).is_file()]


def test_the_default_cron_strings_are_written_in_one_file_only():
    defaults = {ScheduleSection().cron, ScheduleSection().train_cron}
    holders: dict[str, set[str]] = {}
    for path in _repo_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for cron in defaults:
            if cron in text:
                holders.setdefault(cron, set()).add(path.relative_to(REPO).as_posix())
    assert holders == {cron: {HOME} for cron in defaults}, "a second copy of a schedule: " + str(holders)


def test_no_deployment_file_writes_a_cron_string_of_its_own():
    for path in [p for p in _repo_files() if p.relative_to(REPO).parts[0] == "deploy"]:
        text = path.read_text(encoding="utf-8", errors="replace")
        assert not CRON_LITERAL.findall(text), f"{path}: a cron string outside [schedule]"
    deployments = yaml.safe_load((REPO / "deploy" / "prefect.yaml").read_text())["deployments"]
    placeholders = {s[key] for d in deployments for s in d.get("schedules") or [] for key in ("cron", "timezone")}
    assert placeholders == {f"{{{{ ${name} }}}}" for name in ScheduleSection().schedule_env()}
    assert CRON_LITERAL.findall('cron: "5 4 * * 1"')  # the pattern does see a literal


def test_deploy_hands_the_resolved_schedule_to_prefect_deploy(tmp_path, monkeypatch, capsys):
    from radsim.flows.commands import deploy, run

    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "prefect.yaml").write_text("deployments: []\n")
    (tmp_path / "radsim.toml").write_text('[schedule]\ncron = "30 1 * * *"\ntimezone = "Europe/Paris"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:1/api")
    monkeypatch.setenv("RADSIM_TRAIN_CRON", "0 5 * * 6")
    monkeypatch.setattr(run, "check_prefect_server", lambda: None)
    calls = []

    def fake_run(argv, env, **kw):
        calls.append((argv, env))
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(deploy.subprocess, "run", fake_run)
    assert main(["deploy"]) == 0
    argv, env = calls[0]
    assert argv[-4:] == ["deploy", "--all", "--prefect-file", "deploy/prefect.yaml"]
    assert (env["RADSIM_CRON"], env["RADSIM_TRAIN_CRON"], env["RADSIM_SCHEDULE_TIMEZONE"]) == (
        "30 1 * * *", "0 5 * * 6", "Europe/Paris")
    out = capsys.readouterr().out
    assert "cron '30 1 * * *' (radsim.toml)" in out and "cron '0 5 * * 6' (environment)" in out
    assert main(["deploy", "--cron", "7 7 * * *"]) == 0 and calls[-1][1]["RADSIM_CRON"] == "7 7 * * *"


@pytest.mark.parametrize("argv, message", [
    (["deploy", "--cron", "61 * * * *"], "schedule.cron '61 * * * *' is not a valid cron string"),
    (["deploy", "--train-cron", "daily"], "schedule.train_cron 'daily' is not a valid cron string"),
    (["deploy", "--timezone", "Mars/Olympus"], "schedule.timezone 'Mars/Olympus' is not an IANA time zone"),
    (["deploy", "--prefect-file", "missing.yaml"], "missing.yaml not found"),
])
def test_deploy_refuses_a_bad_schedule_or_file_in_one_line(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:1/api")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_failing_prefect_deploy_is_one_line_exit_1(tmp_path, monkeypatch, capsys):
    from radsim.flows.commands import deploy, run

    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "prefect.yaml").write_text("deployments: []\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:1/api")
    monkeypatch.setattr(run, "check_prefect_server", lambda: None)
    monkeypatch.setattr(deploy.subprocess, "run",
                        lambda argv, **kw: subprocess.CompletedProcess(argv, 1, "", "Work pool 'x' not found\n"))
    assert main(["deploy"]) == 1
    assert "prefect deploy failed (exit 1): Work pool 'x' not found" in capsys.readouterr().err
