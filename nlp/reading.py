"""Stream report records out of CSV, Parquet, JSON lines or a folder of *.txt files.

Records come in batches, so memory stays bounded whatever the input size. Report text is kept as
it arrives (bytes for CSV and .txt) and decoded later, so one bad encoding quarantines one report
instead of failing the file.
"""
from __future__ import annotations

import contextlib
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from radsim.data_contracts.errors import UsageError

ID, TEXT, IMAGE_INDEX = "exam_id", "report_text", "image_index"
TABLE_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}


@dataclass(frozen=True)
class ReportRecord:
    exam_id: str | None
    text: object  # str, bytes or None; decoded by the labeler
    row: int  # 1-based position in the input, for messages about records without an id
    image_index: object = None


@dataclass
class ReportSource:
    """An opened input: what it holds, and a way to stream its records."""

    path: Path
    kind: str  # parquet, csv, jsonl, txt
    has_image_index: bool
    total: int | None  # records, when known without reading everything

    def batches(self, batch_size: int = 2048) -> Iterator[list[ReportRecord]]:
        return _READERS[self.kind](self, batch_size)

    def records(self, batch_size: int = 2048) -> Iterator[ReportRecord]:
        for batch in self.batches(batch_size):
            yield from batch


def _missing(path: Path, names: list[str]) -> None:
    lacking = [c for c in (ID, TEXT) if c not in names]
    if lacking:
        found = ", ".join(names[:10]) or "none"
        raise UsageError(f"{path} lacks column(s) {', '.join(lacking)}: a report table needs exam_id and report_text "
                         f"(found: {found})")


def _id(value: object) -> str | None:
    if value is None:
        return None
    text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
    return text.strip() or None


def open_reports(path: str | Path) -> ReportSource:
    """Check an input's shape (one-line UsageError if wrong) and return a streaming source."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"input not found: {path}")
    if path.is_dir():
        n = sum(1 for _ in path.glob("*.txt"))
        if not n:
            raise UsageError(f"input folder {path} has no *.txt reports (the file stem is the exam_id)")
        return ReportSource(path, "txt", False, n)
    kind = TABLE_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise UsageError(f"unsupported input {path}: use .csv, .parquet, .jsonl or a folder of *.txt files")
    try:
        if kind == "parquet":
            pf = pq.ParquetFile(path)
            schema = pf.schema_arrow
            _missing(path, schema.names)
            for name, ok in ((ID, _id_type_ok), (TEXT, _text_type_ok)):
                if not ok(schema.field(name).type):
                    raise UsageError(f"{path}: column {name} has type {schema.field(name).type}, expected text")
            return ReportSource(path, kind, IMAGE_INDEX in schema.names, pf.metadata.num_rows)
        if kind == "csv":
            with _open_csv(path) as rows:
                names = next(rows, [])
            _missing(path, names)
            return ReportSource(path, kind, IMAGE_INDEX in names, None)
        first = _first_json(path)
        _missing(path, list(first))
        return ReportSource(path, kind, IMAGE_INDEX in first, None)
    except UsageError:
        raise
    except (pa.ArrowInvalid, OSError, ValueError, csv.Error) as exc:
        raise UsageError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None


@contextlib.contextmanager
def _open_csv(path: Path) -> Iterator[Iterator[list[str]]]:
    """CSV rows as lists of str, streamed whatever a cell's size (pyarrow's block reader refuses a cell
    larger than its block). Bytes that are not UTF-8 survive as surrogates, so each report is decoded
    (UTF-8, then cp1252) on its own and one bad encoding quarantines one report, not the file."""
    csv.field_size_limit(sys.maxsize)
    with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as fh:
        yield csv.reader(fh)


def _id_type_ok(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t) or pa.types.is_null(t)


def _text_type_ok(t: pa.DataType) -> bool:
    return (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)
            or pa.types.is_large_binary(t) or pa.types.is_null(t))


def _first_json(path: Path) -> dict:
    with open(path, "rb") as fh:
        for line in fh:
            if line.strip():
                obj = _json_line(line)
                if not isinstance(obj, dict):
                    raise UsageError(f"{path}: expected JSON lines with one object per line")
                return obj
    raise UsageError(f"{path} holds no records")


def _json_line(line: bytes) -> object:
    try:
        return json.loads(line)
    except UnicodeDecodeError:
        return json.loads(line.decode("cp1252", errors="replace"))


def _table_batches(source: ReportSource, batches: Iterator[pa.RecordBatch], batch_size: int) -> Iterator[list[ReportRecord]]:
    row = 0
    for rb in batches:
        for start in range(0, rb.num_rows, batch_size):
            part = rb.slice(start, batch_size)
            ids = part.column(ID).to_pylist()
            texts = part.column(TEXT).to_pylist()
            idx = part.column(IMAGE_INDEX).to_pylist() if source.has_image_index else [None] * part.num_rows
            out = [ReportRecord(_id(i), t, row + k + 1, x) for k, (i, t, x) in enumerate(zip(ids, texts, idx))]
            row += part.num_rows
            yield out


def _parquet(source: ReportSource, batch_size: int) -> Iterator[list[ReportRecord]]:
    cols = [ID, TEXT] + ([IMAGE_INDEX] if source.has_image_index else [])
    try:
        yield from _table_batches(source, pq.ParquetFile(source.path).iter_batches(batch_size=batch_size, columns=cols), batch_size)
    except (pa.ArrowInvalid, OSError) as exc:
        raise UsageError(f"cannot read {source.path}: {str(exc).splitlines()[0]}") from None


def _csv(source: ReportSource, batch_size: int) -> Iterator[list[ReportRecord]]:
    out: list[ReportRecord] = []
    try:
        with _open_csv(source.path) as rows:
            header = next(rows, [])
            at = {name: header.index(name) for name in (ID, TEXT, IMAGE_INDEX) if name in header}
            for row, cells in enumerate(rows, start=1):
                if not cells:
                    continue  # a blank line is not a record

                def cell(name: str, cells: list[str] = cells) -> str | None:
                    i = at.get(name)
                    return cells[i] if i is not None and i < len(cells) else None

                text = cell(TEXT)
                raw = None if text is None else text.encode("utf-8", "surrogateescape")
                ident = cell(ID)
                ident = None if ident is None else ident.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                out.append(ReportRecord(_id(ident), raw, row, cell(IMAGE_INDEX) or None))
                if len(out) >= batch_size:
                    yield out
                    out = []
    except (OSError, csv.Error) as exc:
        raise UsageError(f"cannot read {source.path}: {str(exc).splitlines()[0]}") from None
    if out:
        yield out


def _jsonl(source: ReportSource, batch_size: int) -> Iterator[list[ReportRecord]]:
    out: list[ReportRecord] = []
    row = 0
    with open(source.path, "rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            row += 1
            try:
                obj = _json_line(line)
            except ValueError:
                obj = None
            if isinstance(obj, dict):
                out.append(ReportRecord(_id(obj.get(ID)), obj.get(TEXT), row, obj.get(IMAGE_INDEX)))
            else:  # a malformed line is one bad record, quarantined for its missing id
                out.append(ReportRecord(None, None, row))
            if len(out) >= batch_size:
                yield out
                out = []
    if out:
        yield out


def _txt(source: ReportSource, batch_size: int) -> Iterator[list[ReportRecord]]:
    out: list[ReportRecord] = []
    for row, path in enumerate(sorted(source.path.glob("*.txt")), start=1):
        try:
            data: object = path.read_bytes()
        except OSError:
            data = None
        out.append(ReportRecord(path.stem, data, row))
        if len(out) >= batch_size:
            yield out
            out = []
    if out:
        yield out


_READERS = {"parquet": _parquet, "csv": _csv, "jsonl": _jsonl, "txt": _txt}
