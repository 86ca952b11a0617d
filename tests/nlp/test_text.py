"""Decoding, markup stripping, sections and line handling before spaCy."""
from __future__ import annotations

from radsim.nlp.text import asserting_text, decode_report, normalise_lines, prepare, strip_markup


def test_utf8_and_cp1252_bytes_decode():
    assert decode_report("Pleural effusion – small".encode()).text == "Pleural effusion – small"
    assert decode_report("Haemothorax – left".encode("cp1252")).text == "Haemothorax – left"


def test_empty_whitespace_and_missing_are_empty_reports():
    for raw in ("", "   \n\t ", None, b"  "):
        assert decode_report(raw).reason == "empty_report"


def test_nul_filled_and_binary_are_undecodable():
    assert decode_report("\x00" * 64).reason == "undecodable_text"
    assert decode_report(b"\x00" * 64).reason == "undecodable_text"
    assert decode_report(bytes(range(256)) * 4).reason == "undecodable_text"


def test_stray_nul_padding_is_dropped_not_quarantined():
    d = decode_report("No pneumothorax. Small left effusion seen on the lateral view.\x00")
    assert d.text == "No pneumothorax. Small left effusion seen on the lateral view."


def test_html_and_rtf_are_stripped():
    html = "<html><head><style>p{color:red}</style></head><body><p>No&nbsp;pneumothorax.</p><br/>Effusion</body></html>"
    out = strip_markup(html)
    assert "pneumothorax" in out and "<" not in out and "color" not in out
    rtf = r"{\rtf1\ansi{\fonttbl\f0 Arial;}{\colortbl;\red0\green0\blue0;}\pard Small effusion\par No pneumothorax\par}"
    out = strip_markup(rtf)
    assert "Small effusion" in out and "No pneumothorax" in out and "Arial" not in out and "\\" not in out


def test_non_asserting_sections_are_dropped():
    text = "INDICATION: ? pneumonia\nHISTORY: effusion\nFINDINGS: No pneumothorax.\nIMPRESSION: Normal."
    kept = asserting_text(text)
    assert "pneumonia" not in kept and "effusion" not in kept and "No pneumothorax." in kept and "Normal." in kept


def test_report_without_headers_asserts_throughout():
    assert "pneumonia" in asserting_text("Right lower lobe pneumonia. No history of trauma.")


def test_wrapped_lines_rejoin_and_finding_lines_stay_apart():
    assert normalise_lines("No evidence of pleural\neffusion.") == "No evidence of pleural effusion."
    assert normalise_lines("No pneumothorax\nSmall left effusion") == "No pneumothorax\nSmall left effusion"
    assert prepare("FINDINGS:\r\n  No pneumothorax.\r\n\r\n") == "No pneumothorax."
