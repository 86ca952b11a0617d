"""restricted/quarantine.parquet: one table of every refused record, whichever stage refused it."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow.parquet as pq

from radsim.data_contracts import (
    QuarantineRecord,
    load_contract,
    merge_quarantine,
    quarantine_table,
    reason_counts,
    write_parquet_atomic,
)


def collect_quarantine(path: str | Path, records: Sequence[QuarantineRecord], *others: str | Path | None
                       ) -> dict[str, int]:
    """Merge `records` and the stage quarantine files `others` into `path`; the reason counts of the whole table.

    An unchanged table is not rewritten.
    """
    path = Path(path)
    table = quarantine_table(list(records))
    before = pq.read_table(path) if path.exists() else None
    if before is not None:
        table = merge_quarantine(table, before)
    for other in others:
        if other and Path(other).exists():
            table = merge_quarantine(table, pq.read_table(other))
    if before is None or table.num_rows != before.num_rows:
        write_parquet_atomic(table, path, load_contract("quarantine"))
    return reason_counts(table.column("reason_code").to_pylist())


def file_reason_counts(path: str | Path | None) -> dict[str, int]:
    """Reason counts of one stage's quarantine file (empty when there is none)."""
    if not path or not Path(path).exists():
        return {}
    return reason_counts(pq.read_table(path, columns=["reason_code"]).column("reason_code").to_pylist())
