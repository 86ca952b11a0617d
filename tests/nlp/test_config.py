"""LabelConfig: `radsim label`'s options and their rules come from one declaration."""
from __future__ import annotations

import pytest
from radsim.data_contracts import UsageError, settings
from radsim.flows.cli import main
from radsim.nlp.config import LabelConfig


def test_replacing_the_vocabulary_needs_a_file():
    with pytest.raises(UsageError, match=r"^labelling: --replace-vocabulary needs --vocabulary FILE$"):
        settings.build(LabelConfig, {"replace_vocabulary": True}, "labelling")
    assert settings.build(LabelConfig, {"replace_vocabulary": True, "vocabulary": "v.yaml"}).replace_vocabulary


@pytest.mark.parametrize("option", [["--workers", "0"], ["--batch-size", "0"], ["--replace-vocabulary"]])
def test_label_options_out_of_bounds_exit_2(tmp_path, option, capsys):
    src = tmp_path / "r.csv"
    src.write_text("exam_id,report_text\nA1,No effusion.\n")
    assert main(["label", str(src), "--out", str(tmp_path / "l.parquet"), *option]) == 2
    assert "label" not in capsys.readouterr().out  # nothing labelled


def test_help_shows_the_declared_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["label", "--help"])
    text = capsys.readouterr().out
    assert "(default: 512)" in text and "--replace-vocabulary" in text
