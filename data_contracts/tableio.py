"""Read and write contract tables: validated on write and on read, written atomically.

A crash mid-write leaves the previous file intact: data goes to a temporary file in the
same folder and is renamed into place.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from .atomic import atomic_output
from .contract import Contract
from .errors import UsageError


def write_parquet_atomic(table: pa.Table, path: str | Path, contract: Contract | None = None,
                         extra_metadata: dict[str, str] | None = None) -> Path:
    path = Path(path)
    if contract is not None:
        table = contract.validate(table, extra_metadata)
    with atomic_output(path) as tmp:
        pq.write_table(table, tmp)
    return path


def read_input_table(path: str | Path) -> pa.Table:
    """A user-supplied table as CSV, Parquet or JSON lines, chosen by extension.

    CSV columns are read as strings, so ids such as '00123' keep their leading zeros.
    """
    path = Path(path)
    if not path.exists():
        raise UsageError(f"input not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pq.read_table(path)
        if suffix == ".csv":
            return _read_csv_as_strings(path)
        if suffix in (".jsonl", ".ndjson", ".json"):
            return pajson.read_json(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise UsageError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    raise UsageError(f"unsupported table format {suffix!r} for {path}: use .csv, .parquet or .jsonl")


def _read_csv_as_strings(path: Path) -> pa.Table:
    """All columns as strings; a cell larger than pyarrow's block (a 200 KB report, say) is read too."""
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        csv.field_size_limit(sys.maxsize)
        names = next(csv.reader(fh), [])
    convert = pacsv.ConvertOptions(column_types={n: pa.string() for n in names})
    try:
        return pacsv.read_csv(path, convert_options=convert)
    except pa.ArrowInvalid as exc:
        if "straddl" not in str(exc):
            raise
        block = min(path.stat().st_size + 1, 2**31 - 1)  # one block: no row can straddle two
        return pacsv.read_csv(path, read_options=pacsv.ReadOptions(block_size=block), convert_options=convert)


def read_contract_table(path: str | Path, contract: Contract) -> pa.Table:
    """Read a table and validate it against its contract (the read-side check)."""
    return contract.validate(read_input_table(path))
