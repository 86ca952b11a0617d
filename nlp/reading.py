"""Stream report records out of CSV/TSV, Parquet, JSON lines or a folder of *.txt files.

Records come in batches, so memory stays bounded whatever the input size. Report text is kept as
it arrives (bytes for delimited text and .txt) and decoded later, so one bad encoding quarantines
one report instead of failing the file. Nothing is lost on the way: a record that cannot be read
(a malformed CSV record, a JSON line that is not JSON, an unreadable .txt) is a record with a
`problem`, quarantined with its reason and line, and every other record is read.
"""
from __future__ import annotations

import contextlib
import csv
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from radsim.data_contracts.errors import UsageError

from .csv_records import records as delimited_records
from .input_files import (
    ID,
    IMAGE_INDEX,
    TEXT,
    InputFormat,
    input_kind,
    printable,
    resolve_columns,
    sniff_text,
    unreadable,
)

__all__ = ["ID", "TEXT", "IMAGE_INDEX", "InputFormat", "ReportRecord", "ReportSource", "open_reports",
           "MALFORMED", "UNREADABLE"]

READ_BATCH = 2048  # records read at once when the caller names no batch size
MALFORMED = "malformed_record"
UNREADABLE = "unreadable_report"


@dataclass(frozen=True)
class ReportRecord:
    exam_id: str | None
    text: object  # str, bytes or None; decoded by the labeler
    row: int  # 1-based position in the input, for messages about records without an id
    image_index: object = None
    problem: tuple[str, str] | None = None  # (quarantine reason, message) when the record could not be read
    where: str | None = None  # "line 12" where the input has lines


@dataclass
class ReportSource:
    """An opened input: what it holds, and a way to stream its records."""

    path: Path
    kind: str  # parquet, csv, jsonl, json, txt
    has_image_index: bool
    total: int | None  # records, when known without reading everything
    columns: dict[str, str] = field(default_factory=lambda: {ID: ID, TEXT: TEXT})
    delimiter: str = ","
    encoding: str = "utf-8-sig"

    def batches(self, batch_size: int = READ_BATCH) -> Iterator[list[ReportRecord]]:
        out: list[ReportRecord] = []
        for rec in _READERS[self.kind](self):
            out.append(rec)
            if len(out) >= batch_size:
                yield out
                out = []
        if out:
            yield out

    def records(self, batch_size: int = READ_BATCH) -> Iterator[ReportRecord]:
        for batch in self.batches(batch_size):
            yield from batch


def _id(value: object) -> str | None:
    if value is None:
        return None
    text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
    return text.strip() or None


def open_reports(path: str | Path, fmt: InputFormat | None = None) -> ReportSource:
    """Check an input's shape (one-line UsageError if wrong) and return a streaming source."""
    path, fmt = Path(path), fmt or InputFormat()
    if not path.exists():
        raise UsageError(f"input not found: {path}")
    if path.is_dir():
        return _open_folder(path)
    kind = input_kind(path)
    try:
        if kind == "parquet":
            return _open_parquet(path, fmt)
        encoding = sniff_text(path)
        if kind == "csv":
            return _open_delimited(path, fmt, encoding)
        return _open_json(path, fmt, encoding)
    except UsageError:
        raise
    except (pa.ArrowInvalid, ValueError, csv.Error) as exc:
        raise UsageError(f"cannot read {path}: {printable(str(exc).splitlines()[0], 200)}") from None
    except OSError as exc:
        raise unreadable(path, exc) from None


def _open_folder(path: Path) -> ReportSource:
    try:
        n = sum(1 for entry in os.scandir(path) if entry.name.endswith(".txt"))
    except OSError as exc:
        raise unreadable(path, exc, "input folder ") from None
    return ReportSource(path, "txt", False, n)


def _open_parquet(path: Path, fmt: InputFormat) -> ReportSource:
    pf = pq.ParquetFile(path)
    schema = pf.schema_arrow
    columns = resolve_columns(path, schema.names, fmt)
    for role, ok in ((ID, _id_type_ok), (TEXT, _text_type_ok)):
        kind = schema.field(columns[role]).type
        if not ok(kind):
            raise UsageError(f"{path}: column {columns[role]} has type {kind}, expected text")
    return ReportSource(path, "parquet", IMAGE_INDEX in columns, pf.metadata.num_rows, columns)


@contextlib.contextmanager
def _text(path: Path, encoding: str) -> Iterator[Any]:
    """Text lines with their line ends; bytes that are not UTF-8 survive as surrogates, so each report is
    decoded (UTF-8, then cp1252) on its own and one bad encoding quarantines one report, not the file."""
    csv.field_size_limit(sys.maxsize)
    errors = "surrogateescape" if encoding.startswith("utf-8") else "replace"
    with open(path, newline="", encoding=encoding, errors=errors) as fh:
        yield fh


def _open_delimited(path: Path, fmt: InputFormat, encoding: str) -> ReportSource:
    delimiter = fmt.delimiter_for(path)
    with _text(path, encoding) as fh:
        header = next(delimited_records(fh, delimiter), None)
    if header is None:  # an empty file: no records, like an empty table in any other format
        return ReportSource(path, "csv", False, 0, delimiter=delimiter, encoding=encoding)
    if header.fields is None:
        raise UsageError(f"{path}: line {header.line} (the header) {header.problem}")
    columns = resolve_columns(path, [h.strip() for h in header.fields], fmt, delimiter)
    return ReportSource(path, "csv", IMAGE_INDEX in columns, None, columns, delimiter, encoding)


def _open_json(path: Path, fmt: InputFormat, encoding: str) -> ReportSource:
    with _text(path, encoding) as fh:
        first_char = next((c for line in fh for c in line if not c.isspace()), None)
    if first_char is None:
        return ReportSource(path, "jsonl", False, 0, encoding=encoding)
    if first_char == "[":
        return _open_json_array(path, fmt, encoding)
    first, problems = None, []
    with _text(path, encoding) as fh:
        for n, line in enumerate(fh, start=1):
            if line.strip():
                obj, problem = _json_object(line)
                if obj is not None:
                    first = obj
                    break
                problems.append(f"line {n} {problem}")
    if first is None:
        raise UsageError(f"{path} holds no JSON object: {problems[0]} (JSON lines: one object per line)")
    columns = resolve_columns(path, list(first), fmt)
    return ReportSource(path, "jsonl", IMAGE_INDEX in columns, None, columns, encoding=encoding)


def _open_json_array(path: Path, fmt: InputFormat, encoding: str) -> ReportSource:
    with _text(path, encoding) as fh:
        items = json.load(fh)
    objects = [o for o in items if isinstance(o, dict)] if isinstance(items, list) else []
    columns = resolve_columns(path, list(objects[0]) if objects else [ID, TEXT], fmt)
    return ReportSource(path, "json", IMAGE_INDEX in columns, len(items), columns, encoding=encoding)


def _json_object(line: str) -> tuple[dict | None, str]:
    """(the object, "") or (None, what is wrong with the line)."""
    try:
        obj = json.loads(line)
    except ValueError as exc:
        return None, f"is not JSON ({str(exc).split(':')[0].lower()})"
    if not isinstance(obj, dict):
        return None, f"is a JSON {type(obj).__name__}, not an object"
    return obj, ""


def _id_type_ok(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t) or pa.types.is_null(t)


def _text_type_ok(t: pa.DataType) -> bool:
    return (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)
            or pa.types.is_large_binary(t) or pa.types.is_null(t))


# --------------------------------------------------------------------------- readers, one record at a time

def _parquet(source: ReportSource) -> Iterator[ReportRecord]:
    cols = source.columns
    names = [cols[ID], cols[TEXT]] + ([cols[IMAGE_INDEX]] if source.has_image_index else [])
    row = 0
    try:
        for rb in pq.ParquetFile(source.path).iter_batches(batch_size=2048, columns=names):
            ids, texts = rb.column(cols[ID]).to_pylist(), rb.column(cols[TEXT]).to_pylist()
            idx = rb.column(cols[IMAGE_INDEX]).to_pylist() if source.has_image_index else [None] * rb.num_rows
            for i, t, x in zip(ids, texts, idx):
                row += 1
                yield ReportRecord(_id(i), t, row, x)
    except (pa.ArrowInvalid, OSError) as exc:
        raise UsageError(f"cannot read {source.path}: {printable(str(exc).splitlines()[0], 200)}") from None


def _csv(source: ReportSource) -> Iterator[ReportRecord]:
    if source.total == 0:
        return
    try:
        with _text(source.path, source.encoding) as fh:
            raw = delimited_records(fh, source.delimiter)
            header = [h.strip() for h in (next(raw).fields or [])]
            at = {role: header.index(name) for role, name in source.columns.items()}
            for row, rec in enumerate(raw, start=1):
                yield _csv_record(rec, row, at, len(header), source.delimiter)
    except OSError as exc:
        raise unreadable(source.path, exc) from None


def _csv_record(rec: Any, row: int, at: dict[str, int], width: int, delimiter: str) -> ReportRecord:
    where = f"line {rec.line}"
    if rec.fields is None:
        return ReportRecord(None, None, row, problem=(MALFORMED, f"{where}: {rec.problem}"), where=where)
    fields: list[str] = rec.fields
    if len(fields) <= max(at.values()):
        return ReportRecord(None, None, row, where=where, problem=(
            MALFORMED, f"{where}: {len(fields)} field(s) where the header has {width}"))
    if len(fields) > width and any(f.strip() for f in fields[width:]):
        return ReportRecord(None, None, row, where=where, problem=(
            MALFORMED, f"{where}: {len(fields)} fields where the header has {width} (an unquoted {delimiter!r} "
            "inside a field?)"))
    ident = fields[at[ID]].encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    text = fields[at[TEXT]].encode("utf-8", "surrogateescape")
    index = fields[at[IMAGE_INDEX]] or None if IMAGE_INDEX in at else None
    return ReportRecord(_id(ident), text, row, index, where=where)


def _get(obj: dict, name: str) -> object:
    if name in obj:
        return obj[name]
    key = name.lower()
    return next((v for k, v in obj.items() if str(k).strip().lower() == key), None)


def _jsonl(source: ReportSource) -> Iterator[ReportRecord]:
    cols, row = source.columns, 0
    if source.total == 0:
        return
    with _text(source.path, source.encoding) as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            row += 1
            obj, problem = _json_object(line)
            where = f"line {n}"
            if obj is None:
                yield ReportRecord(None, None, row, problem=(MALFORMED, f"{where} {problem}"), where=where)
                continue
            yield ReportRecord(_id(_get(obj, cols[ID])), _get(obj, cols[TEXT]), row,
                               _get(obj, cols[IMAGE_INDEX]) if IMAGE_INDEX in cols else None, where=where)


def _json(source: ReportSource) -> Iterator[ReportRecord]:
    cols = source.columns
    with _text(source.path, source.encoding) as fh:
        items = json.load(fh)
    for row, obj in enumerate(items, start=1):
        where = f"item {row}"
        if not isinstance(obj, dict):
            yield ReportRecord(None, None, row, problem=(MALFORMED, f"{where} is a JSON {type(obj).__name__}, "
                                                         "not an object"), where=where)
            continue
        yield ReportRecord(_id(_get(obj, cols[ID])), _get(obj, cols[TEXT]), row,
                           _get(obj, cols[IMAGE_INDEX]) if IMAGE_INDEX in cols else None, where=where)


def _txt(source: ReportSource) -> Iterator[ReportRecord]:
    try:
        paths = sorted(source.path / e.name for e in os.scandir(source.path) if e.name.endswith(".txt"))
    except OSError as exc:
        raise unreadable(source.path, exc, "input folder ") from None
    for row, path in enumerate(paths, start=1):
        try:
            data: object = path.read_bytes()
        except OSError as exc:
            yield ReportRecord(path.stem, None, row, problem=(UNREADABLE, f"cannot read {path.name}: "
                                                              f"{(exc.strerror or type(exc).__name__).lower()}"))
            continue
        yield ReportRecord(path.stem, data, row)


_READERS = {"parquet": _parquet, "csv": _csv, "jsonl": _jsonl, "json": _json, "txt": _txt}
