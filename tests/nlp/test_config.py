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


@pytest.mark.parametrize("option", [["--certainty-threshold", "sure"], ["--delimiter", ";;"], ["--id-column", ""]])
def test_input_and_certainty_options_are_checked(tmp_path, option, capsys):
    src = tmp_path / "r.csv"
    src.write_text("exam_id,report_text\nA1,No effusion.\n")
    try:
        code = main(["label", str(src), "--out", str(tmp_path / "l.parquet"), *option])
    except SystemExit as exc:  # argparse refuses a value outside the declared choices
        code = exc.code
    assert code == 2 and "error" in capsys.readouterr().err
    assert not (tmp_path / "l.parquet").exists()


def test_certainty_threshold_is_a_cli_option_that_changes_the_labels(tmp_path, capsys):
    import pyarrow.parquet as pq

    src = tmp_path / "r.csv"
    src.write_text("exam_id,report_text\nA1,Right basal opacity compatible with pneumonia. Probable small effusion.\n")
    values = {}
    for grade in ("definite", "consistent", "probable"):
        out = tmp_path / f"{grade}.parquet"
        assert main(["label", str(src), "--out", str(out), "--no-progress", "--certainty-threshold", grade]) == 0
        table = pq.read_table(out)
        row = table.to_pylist()[0]
        values[grade] = (row["pneumonia"], row["pleural_effusion"])
        assert table.schema.metadata[b"radsim.labeler.certainty_threshold"] == grade.encode()
    assert values == {"definite": (-1, -1), "consistent": (1, -1), "probable": (1, 1)}
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["label", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--certainty-threshold" in text and "(default: consistent)" in text and "--delimiter" in text


def test_delimiter_names_and_the_input_format():
    cfg = LabelConfig(delimiter="tab", id_column="Accession", text_column="Impression")
    fmt = cfg.input_format()
    assert (fmt.delimiter, fmt.id_column, fmt.text_column) == ("\t", "Accession", "Impression")
    assert LabelConfig(delimiter="semicolon").delimiter == ";" and LabelConfig().delimiter is None
