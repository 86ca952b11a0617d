"""Delimited text read record by record: a malformed record is reported with its line, never merged or dropped."""
from __future__ import annotations

import io

from radsim.nlp.csv_records import records


def _read(text: str, delimiter: str = ",") -> list:
    return list(records(io.StringIO(text, newline=""), delimiter))


def test_multi_line_quoted_fields_doubled_quotes_and_crlf_are_read_whole():
    got = _read('exam_id,report_text\r\nA1,"FINDINGS: Small effusion.\r\nNo ""acute"" change."\r\n\r\nA2,plain\r\n')
    assert [r.fields for r in got] == [
        ["exam_id", "report_text"],
        ["A1", 'FINDINGS: Small effusion.\r\nNo "acute" change.'],
        ["A2", "plain"],
    ]
    assert [r.line for r in got] == [1, 2, 5]  # the blank line is not a record


def test_a_quote_never_closed_is_one_bad_record_and_every_line_it_swallowed_is_read_again():
    lines = (
        ["exam_id,report_text", "A1,ok"]
        + ['A2,"Normal heart size']
        + [f"A{i},Small effusion {i}." for i in range(3, 50)]
    )
    got = _read("\n".join(lines) + "\n")
    bad = [r for r in got if r.fields is None]
    assert [(r.line, "never closed" in r.problem) for r in bad] == [(3, True)]
    good = [r.fields[0] for r in got[1:] if r.fields is not None]
    assert good == ["A1"] + [f"A{i}" for i in range(3, 50)]


def test_a_stray_quote_closed_by_the_next_records_quote_does_not_merge_the_two():
    got = _read('exam_id,report_text\nA1,"Small effusion\nA2,No pneumothorax.\nA3,"Cardiomegaly."\nA4,x\n')
    assert got[1].fields is None and got[1].line == 2 and "not closed before line 4" in got[1].problem
    assert [r.fields for r in got[2:]] == [["A2", "No pneumothorax."], ["A3", "Cardiomegaly."], ["A4", "x"]]


def test_an_unescaped_quote_inside_a_quoted_field_is_reported():
    got = _read('exam_id,report_text\nA1,"He said "no" effusion"\nA2,x\n')
    assert got[1].fields is None and "not doubled" in got[1].problem
    assert got[2].fields == ["A2", "x"]


def test_other_delimiters_and_quotes_inside_unquoted_fields():
    assert [r.fields for r in _read('a;b\nA1;"x; y"\nA2;5" nodule\n', ";")] == [["a", "b"], ["A1", "x; y"],
                                                                                ["A2", '5" nodule']]
    got = _read('a\tb\nA1\t"x\ty"\nA2\t5" nodule\n', "\t")
    assert [r.fields for r in got] == [["a", "b"], ["A1", "x\ty"], ["A2", '5" nodule']]
