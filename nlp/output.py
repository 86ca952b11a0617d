"""Where labels go, by the --out extension: the labels contract (.parquet) or the CheXpert layout (.csv).

`.parquet` is the contract every later stage reads. `.csv` is for NLP users whose code reads the
CheXpert labeler's output: `exam_id`, then one column per finding in the CheXpert labeler's order and
names ("No Finding", ..., "Support Devices"), then radsim's other findings in Title Case, each 1, 0, -1 or
blank. As in the CheXpert labeler's output, "No Finding" is 1 or blank. The evidence goes to a side
file, LABELS.evidence.csv, one row per (exam, finding); quarantined records to LABELS.quarantine.csv.
Every file is written through a temporary name and renamed into place.
"""
from __future__ import annotations

import contextlib
import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from radsim.data_contracts import QuarantineRecord, UsageError, quarantine_table, write_parquet_atomic
from radsim.data_contracts.atomic import atomic_output
from radsim.data_contracts.vocabulary import NO_FINDING

from .naming import chexpert_order, display_name

PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv",)
EVIDENCE_COLUMNS = ["exam_id", "finding", "value", "status", "certainty", "sentence", "trigger", "rule"]


class LabelSink(Protocol):
    def write(self, table: pa.Table) -> None: ...


def output_kind(out: Path) -> str:
    """"parquet" or "csv" from the --out name; anything else is a one-line UsageError."""
    suffix = out.suffix.lower()
    if out.exists() and out.is_dir():
        raise UsageError(f"--out {out} is a folder; give a .parquet or .csv file name")
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    if suffix in CSV_SUFFIXES:
        return "csv"
    raise UsageError(f"--out {out}: name the labels file .parquet (the labels contract) or .csv (CheXpert layout)")


def side_path(out: str | Path, part: str) -> Path:
    """LABELS.parquet → LABELS.<part>.parquet; LABELS.csv → LABELS.<part>.csv."""
    out = Path(out)
    suffix = out.suffix if out.suffix.lower() in PARQUET_SUFFIXES + CSV_SUFFIXES else ".parquet"
    stem = out.name[: -len(out.suffix)] if out.suffix.lower() in PARQUET_SUFFIXES + CSV_SUFFIXES else out.name
    return out.with_name(f"{stem}.{part}{suffix}")


class _CsvSink:
    """The CheXpert layout and its evidence side file, written a batch at a time."""

    def __init__(self, labels_fh, evidence_fh, findings: list[str]):
        self.findings = chexpert_order(findings)
        self.labels = csv.writer(labels_fh)
        self.evidence = csv.writer(evidence_fh)
        self.labels.writerow(["exam_id", *(display_name(f) for f in self.findings)])
        self.evidence.writerow(EVIDENCE_COLUMNS)

    def write(self, table: pa.Table) -> None:
        for row in table.to_pylist():
            self.labels.writerow([row["exam_id"], *(_cell(f, row[f]) for f in self.findings)])
            values = {f: row.get(f) for f in self.findings}
            for ev in row.get("evidence") or []:
                self.evidence.writerow([row["exam_id"], display_name(ev["finding"]),
                                        _text(values.get(ev["finding"])), ev.get("status"), ev.get("certainty"),
                                        ev.get("sentence"), ev.get("trigger"), ev.get("rule")])


def _cell(finding: str, value: int | None) -> str:
    if finding == NO_FINDING and value == 0:
        return ""  # the CheXpert labeler writes No Finding as 1 or blank
    return _text(value)


def _text(value: object) -> str:
    return "" if value is None else str(value)


@contextlib.contextmanager
def open_sink(out: Path, schema: pa.Schema, findings: list[str]) -> Iterator[LabelSink]:
    """A writer for label batches, renamed into place (with its side files) only when the block succeeds."""
    if output_kind(out) == "parquet":
        with atomic_output(out) as tmp, pq.ParquetWriter(tmp, schema) as writer:
            yield writer
        return
    with atomic_output(out) as tmp, atomic_output(side_path(out, "evidence")) as ev_tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as labels_fh, \
                open(ev_tmp, "w", newline="", encoding="utf-8") as evidence_fh:
            yield _CsvSink(labels_fh, evidence_fh, findings)


def write_quarantine(records: list[QuarantineRecord], path: Path) -> Path:
    """The quarantine table beside the labels, in the labels' format."""
    table = quarantine_table(records)
    if path.suffix.lower() != ".csv":
        return write_parquet_atomic(table, path)
    columns = ["stage", "record_id", "reason_code", "message", "source_uri", "seen_at"]
    with atomic_output(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for row in table.to_pylist():
            writer.writerow(["" if row[c] is None else str(row[c]) for c in columns])
    return path
