"""Report inputs: every format, column mapping, delimiters, and the records that cannot be read."""
from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from radsim.data_contracts import UsageError
from radsim.nlp import input_files, reading
from radsim.nlp.reading import MALFORMED, UNREADABLE, InputFormat, open_reports


def _records(path, fmt=None) -> list:
    return list(open_reports(path, fmt).records())


def test_tsv_is_tab_separated_and_delimiter_covers_the_rest(tmp_path):
    (tmp_path / "r.tsv").write_text("exam_id\treport_text\nA1\tSmall effusion, no pneumothorax.\n")
    assert [(r.exam_id, r.text) for r in _records(tmp_path / "r.tsv")] == [("A1", b"Small effusion, no pneumothorax.")]
    (tmp_path / "semi.csv").write_text('exam_id;report_text\nA1;"No effusion; small pneumothorax."\nA2;Normal.\n')
    with pytest.raises(UsageError, match="the header holds ';', read it with --delimiter ';'"):
        open_reports(tmp_path / "semi.csv")
    got = _records(tmp_path / "semi.csv", InputFormat(delimiter=";"))
    assert [(r.exam_id, r.text) for r in got] == [("A1", b"No effusion; small pneumothorax."), ("A2", b"Normal.")]


def test_headers_match_in_any_case_and_columns_can_be_mapped(tmp_path):
    (tmp_path / "u.csv").write_text("EXAM_ID, Report_Text \nA1,Small effusion.\n")
    assert [r.exam_id for r in _records(tmp_path / "u.csv")] == ["A1"]
    (tmp_path / "m.csv").write_text("Accession,Findings\nX1,Small effusion.\n")
    with pytest.raises(
        UsageError, match=r"lacks column\(s\) exam_id, report_text .*--id-column NAME and --text-column"
    ):
        open_reports(tmp_path / "m.csv")
    got = _records(tmp_path / "m.csv", InputFormat(id_column="accession", text_column="FINDINGS"))
    assert [(r.exam_id, r.text) for r in got] == [("X1", b"Small effusion.")]
    (tmp_path / "twice.csv").write_text("exam_id,EXAM_ID,report_text\nA,B,x\n")
    assert _records(tmp_path / "twice.csv")[0].exam_id == "A"  # an exact match wins
    (tmp_path / "ambiguous.csv").write_text("Exam_Id,EXAM_ID,report_text\nA,B,x\n")
    with pytest.raises(UsageError, match="has 2 columns named exam_id"):
        open_reports(tmp_path / "ambiguous.csv")
    pq.write_table(pa.table({"Exam_ID": ["P1"], "TEXT": ["No effusion."]}), tmp_path / "p.parquet")
    assert _records(tmp_path / "p.parquet", InputFormat(text_column="text"))[0].exam_id == "P1"
    (tmp_path / "k.jsonl").write_text('{"EXAM_ID": "J1", "Report_Text": "No effusion."}\n')
    assert [(r.exam_id, r.text) for r in _records(tmp_path / "k.jsonl")] == [("J1", "No effusion.")]


def test_a_csv_record_with_the_wrong_number_of_fields_is_malformed_not_truncated(tmp_path):
    (tmp_path / "f.csv").write_text("exam_id,report_text\nA1,Small effusion, no pneumothorax\nA2\nA3,ok,\n")
    got = _records(tmp_path / "f.csv")
    assert got[0].problem == (MALFORMED, "line 2: 3 fields where the header has 2 (an unquoted ',' inside a field?)")
    assert got[1].problem == (MALFORMED, "line 3: 1 field(s) where the header has 2")
    assert got[2].problem is None and got[2].text == b"ok"  # an empty trailing field is harmless


def test_a_json_line_that_is_not_json_is_a_malformed_record(tmp_path):
    (tmp_path / "r.jsonl").write_text(
        '{"exam_id": "J1", "report_text": "x"}\nnot json\n\n[1, 2]\n{"report_text": "y"}\n'
    )
    got = _records(tmp_path / "r.jsonl")
    assert got[1].problem == (MALFORMED, "line 2 is not JSON (expecting value)")
    assert got[2].problem == (MALFORMED, "line 4 is a JSON list, not an object")
    assert got[3].problem is None and got[3].exam_id is None and got[3].where == "line 5"  # no id: quarantined later
    (tmp_path / "none.jsonl").write_text("not json\nnor this\n")
    with pytest.raises(UsageError, match="holds no JSON object: line 1 is not JSON"):
        open_reports(tmp_path / "none.jsonl")


def test_a_json_array_file_is_read(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps([{"exam_id": "A", "report_text": "x"}, 3]))
    got = _records(tmp_path / "r.json")
    assert got[0].exam_id == "A" and got[1].problem == (MALFORMED, "item 2 is a JSON int, not an object")


def test_unreadable_files_and_folders_are_reported_as_unreadable(tmp_path, monkeypatch):
    folder = tmp_path / "reports"
    folder.mkdir()
    (folder / "A1.txt").write_text("Small effusion.")
    (folder / "A2.txt").mkdir()  # a .txt that cannot be read as a file
    got = _records(folder)
    assert got[0].text == b"Small effusion."
    assert got[1].exam_id == "A2" and got[1].problem == (UNREADABLE, "cannot read A2.txt: is a directory")

    def denied(*_a, **_k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(reading.os, "scandir", denied)
    with pytest.raises(UsageError, match=f"cannot read input folder {folder}: permission denied"):
        open_reports(folder)
    monkeypatch.undo()
    (tmp_path / "r.csv").write_text("exam_id,report_text\nA,x\n")
    monkeypatch.setattr(input_files, "open", denied, raising=False)
    with pytest.raises(UsageError, match="cannot read .*r.csv: permission denied"):
        open_reports(tmp_path / "r.csv")


def test_binary_input_is_refused_without_printing_its_bytes(tmp_path):
    (tmp_path / "image.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    with pytest.raises(UsageError) as err:
        open_reports(tmp_path / "image.csv")
    assert "is not a text file" in str(err.value) and str(err.value).isprintable()
    (tmp_path / "ctrl.csv").write_bytes(bytes(range(1, 9)) * 200)
    with pytest.raises(UsageError, match="control characters"):
        open_reports(tmp_path / "ctrl.csv")
    pq.write_table(pa.table({"exam_id": ["A"]}), tmp_path / "table.csv")
    with pytest.raises(UsageError, match="is a Parquet file, not text: name it .parquet"):
        open_reports(tmp_path / "table.csv")
    (tmp_path / "latin.csv").write_bytes("exam_id,r\u00e9port\n".encode("cp1252") + b"A,\x81\x8d\n")
    with pytest.raises(UsageError) as err:
        open_reports(tmp_path / "latin.csv")
    assert str(err.value).isprintable() and "\\x" in str(err.value)  # the bad byte escaped, not printed raw


def test_utf16_csv_from_a_spreadsheet_is_read(tmp_path):
    (tmp_path / "u16.csv").write_bytes("exam_id,report_text\r\nA1,Small effusion.\r\n".encode("utf-16"))
    assert [(r.exam_id, r.text) for r in _records(tmp_path / "u16.csv")] == [("A1", b"Small effusion.")]


@pytest.mark.parametrize("name,content", [
    ("zero.csv", b""), ("header.csv", b"exam_id,report_text\n"), ("empty.jsonl", b""), ("blank.jsonl", b"\n \n"),
    ("header.tsv", b"exam_id\treport_text\r\n"), ("empty.json", b""),
])
def test_empty_inputs_hold_no_records_in_every_format(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    assert _records(tmp_path / name) == []


def test_an_empty_folder_and_an_empty_parquet_hold_no_records(tmp_path):
    (tmp_path / "none").mkdir()
    assert _records(tmp_path / "none") == []
    pq.write_table(pa.table({"exam_id": pa.array([], pa.string()), "report_text": pa.array([], pa.string())}),
                   tmp_path / "e.parquet")
    assert _records(tmp_path / "e.parquet") == []


def test_printable_escapes_control_characters_and_bad_bytes():
    assert input_files.printable("a\x00b\udc81c") == "a\\x00b\\x81c"
    assert input_files.printable("x" * 100, 10) == "x" * 9 + "…"
    assert os.linesep not in input_files.printable("line\nbreak")
