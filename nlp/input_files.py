"""What an input file is before its records are read: its kind, delimiter, encoding and columns.

Checks here fail with one UsageError line that names the file and never quotes raw bytes: a binary
file named .csv, a header that lacks a column (with a hint when another delimiter or a column
mapping would fix it), an unreadable file or folder.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from radsim.data_contracts.errors import UsageError

ID, TEXT, IMAGE_INDEX = "exam_id", "report_text", "image_index"
KINDS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "csv", ".tab": "csv", ".jsonl": "jsonl",
         ".ndjson": "jsonl", ".json": "jsonl"}
DEFAULT_DELIMITERS = {".tsv": "\t", ".tab": "\t"}
DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffd]")
_SNIFF_BYTES = 1 << 16


@dataclass(frozen=True)
class InputFormat:
    """How to read a report table: the delimiter of delimited text (None: by extension) and column names."""

    delimiter: str | None = None
    id_column: str = ID
    text_column: str = TEXT

    def delimiter_for(self, path: Path) -> str:
        return self.delimiter or DEFAULT_DELIMITERS.get(path.suffix.lower(), ",")


def parse_delimiter(value: str | None) -> str | None:
    """A --delimiter value as one character: ';', '|', 'tab' or '\\t', ... (None: by extension)."""
    if value is None or value == "":
        return None
    char = DELIMITER_NAMES.get(value.lower(), value)
    if len(char) != 1 or char in ('"', "\n", "\r"):
        raise UsageError(
            f"--delimiter must be one character (or tab, comma, semicolon, pipe), got {printable(value)!r}"
        )
    return char


def printable(value: object, limit: int = 60) -> str:
    """Text that is safe to print in a one-line message: control characters and bad bytes escaped, truncated."""
    text = value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)
    text = _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()) & 0xFF:02x}", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def input_kind(path: Path) -> str:
    kind = KINDS.get(path.suffix.lower())
    if kind is None:
        raise UsageError(f"unsupported input {path}: use .csv, .tsv, .parquet, .jsonl or a folder of *.txt files")
    return kind


def sniff_text(path: Path) -> str:
    """The encoding of a text input (UTF-8, or UTF-16 with a byte-order mark), or a UsageError if it is binary."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(_SNIFF_BYTES)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {_reason(exc)}") from None
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    if head.startswith(b"PAR1"):
        raise UsageError(f"{path} is a Parquet file, not text: name it .parquet")
    if b"\x00" in head:
        raise UsageError(f"{path} is not a text file: it holds binary data (a NUL byte at byte {head.index(0)})")
    controls = sum(1 for b in head if b < 9 or 13 < b < 32)
    if head and controls > 0.05 * len(head):
        raise UsageError(f"{path} is not a text file: {controls} of its first {len(head)} bytes are control characters")
    return "utf-8-sig"


def _reason(exc: OSError) -> str:
    return (exc.strerror or type(exc).__name__).lower()


def unreadable(path: Path, exc: OSError, what: str = "") -> UsageError:
    return UsageError(f"cannot read {what}{path}: {_reason(exc)}")


def resolve_columns(path: Path, names: list[str], fmt: InputFormat, delimiter: str | None = None) -> dict[str, str]:
    """{exam_id, report_text[, image_index]} → the input's own column names, matched case-insensitively."""
    wanted = {ID: fmt.id_column, TEXT: fmt.text_column, IMAGE_INDEX: IMAGE_INDEX}
    found: dict[str, str] = {}
    missing: list[str] = []
    for role, name in wanted.items():
        match = _match(path, names, name)
        if match is not None:
            found[role] = match
        elif role != IMAGE_INDEX:
            missing.append(name)
    if missing:
        shown = ", ".join(printable(n, 40) for n in names[:10]) or "none"
        raise UsageError(f"{path} lacks column(s) {', '.join(missing)} (found: {shown}){_hint(names, fmt, delimiter)}")
    return found


def _match(path: Path, names: list[str], wanted: str) -> str | None:
    if wanted in names:
        return wanted
    key = wanted.strip().lower()
    hits = [n for n in names if str(n).strip().lower() == key]
    if len(hits) > 1:
        raise UsageError(f"{path} has {len(hits)} columns named {wanted} (in any case): "
                         f"{', '.join(printable(h, 40) for h in hits)}")
    return hits[0] if hits else None


def _hint(names: list[str], fmt: InputFormat, delimiter: str | None) -> str:
    if delimiter is not None and len(names) == 1:
        other = next((d for d in (";", "\t", "|", ",") if d != delimiter and d in str(names[0])), None)
        if other is not None:
            return f": the header holds {other!r}, read it with --delimiter {'tab' if other == chr(9) else repr(other)}"
    hints = []
    if fmt.id_column == ID:
        hints.append("--id-column NAME")
    if fmt.text_column == TEXT:
        hints.append("--text-column NAME")
    return f": name your columns with {' and '.join(hints)}" if hints else ""
