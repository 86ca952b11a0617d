"""The `radsim` command: help everywhere, one-line errors, DESIGN §4 exit codes."""
from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from radsim.data_contracts.errors import RadsimError, UsageError
from radsim.flows import cli


@pytest.mark.parametrize("command", cli.COMMANDS)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert f"radsim {command}" in out and len(out.splitlines()) > 3


def test_top_level_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for command in cli.COMMANDS:
        assert command in out


def test_no_command_prints_help_and_exits_2(capsys):
    assert cli.main([]) == 2
    assert "usage" in capsys.readouterr().out


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["no-such-command"])
    assert exit_.value.code == 2


def _fake_command(exc: Exception):
    def register(sub: argparse._SubParsersAction) -> None:
        p = sub.add_parser("boom")
        p.set_defaults(func=lambda args: (_ for _ in ()).throw(exc))
    return register


@pytest.mark.parametrize(
    "exc, code, text",
    [
        (UsageError("input has no column 'exam_id'"), 2, "radsim boom: error: input has no column 'exam_id'"),
        (RadsimError("training diverged"), 1, "radsim boom: error: training diverged"),
        (ZeroDivisionError("division by zero"), 1, "radsim boom: failed: ZeroDivisionError: division by zero"),
    ],
)
def test_errors_are_one_line_with_exit_code(monkeypatch, capsys, exc, code, text):
    original = cli.build_parser

    def parser_with_boom():
        parser = original()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        _fake_command(exc)(sub)
        return parser

    monkeypatch.setattr(cli, "build_parser", parser_with_boom)
    assert cli.main(["boom"]) == code
    err = capsys.readouterr().err.strip()
    assert err.splitlines()[0].startswith(text) and len(err.splitlines()) == 1
    assert "Traceback" not in err


def test_debug_shows_traceback(monkeypatch, capsys):
    original = cli.build_parser

    def parser_with_boom():
        parser = original()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        _fake_command(UsageError("bad"))(sub)
        return parser

    monkeypatch.setattr(cli, "build_parser", parser_with_boom)
    assert cli.main(["--debug", "boom"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_console_script_is_installed():
    proc = subprocess.run(
        [sys.executable, "-m", "radsim.flows.cli", "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and "radsim" in proc.stdout


def test_help_does_not_import_torch_or_prefect():
    code = (
        "import sys\nfrom radsim.flows import cli\n"
        "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'prefect') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_missing_optional_package_names_the_extra(monkeypatch, capsys):
    original = cli.build_parser

    def parser_with_missing_module():
        parser = original()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        _fake_command(ModuleNotFoundError("No module named 'pydicom'", name="pydicom"))(sub)
        return parser

    monkeypatch.setattr(cli, "build_parser", parser_with_missing_module)
    assert cli.main(["boom"]) == 2  # an installation error is a usage error (DESIGN §4)
    err = capsys.readouterr().err
    assert "pip install 'radsim[imaging]'" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("module", "argv", "extra"), [
    ("torch", ["train", "--shards", "SHARDS", "--out", "OUT"], "training"),
    ("torch", ["publish", "--model", "M", "--shards", "S", "--out", "P"], "training"),
    ("pydicom", ["synth", "--exams", "3", "--out", "OUT"], "imaging"),
    ("torch", ["demo", "--out", "OUT"], "training"),
    ("webdataset", ["run", "INBOX", "--warehouse", "WH"], "imaging"),
])
def test_every_missing_extra_exits_2_and_names_it(tmp_path, module, argv, extra):
    """DESIGN §4: an installation error is a usage error (exit 2), whichever command meets it."""
    argv = [str(tmp_path / a) if a.isupper() and len(a) > 1 else a for a in argv]
    code = ("import sys; sys.modules[sys.argv[1]] = None\n"  # the package is not installed
            "from radsim.flows.cli import main\nsys.exit(main(sys.argv[2:]))")
    (tmp_path / "SHARDS").mkdir()
    proc = subprocess.run([sys.executable, "-c", code, module, *argv], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert f"pip install 'radsim[{extra}]'" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
