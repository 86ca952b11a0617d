"""The inbox index: what each exam folder gave the last scan, and the stat digest of its files.

Like git's index, it lets a nightly scan skip every folder whose files' stats (name, size,
mtime_ns, inode, ctime_ns) are unchanged: the folder is listed and stat-ed, never opened, and its
rows are taken from the index as one Arrow selection rather than re-read and re-parsed. The index
is a cache of what files with those stats contain, so it is valid whatever happens to the run; it
is written after restricted/exams.parquet, so it never names rows that table lacks.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from radsim.data_contracts import QuarantineRecord, load_contract, write_parquet_atomic
from radsim.data_contracts.ingest import STAGE
from radsim.warehouse.layout import INBOX_INDEX_FILE

INDEX_FILE = INBOX_INDEX_FILE  # in the warehouse's restricted/ folder
ROW_COLUMNS = ("exam_id", "patient_id", "image_uri", "image_index", "report_text", "study_date", "view_position",
               "source")


def folder_stat(entries: list[os.DirEntry]) -> str:
    """Digest of the files' (name, size, mtime_ns, inode, ctime_ns), from the listing's stat calls."""
    parts = []
    for e in entries:
        st = e.stat()
        parts.append(f"{e.name}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\0{st.st_ctime_ns}")
    parts.sort()
    return hashlib.blake2b("\n".join(parts).encode(), digest_size=16).hexdigest()


def _schema() -> pa.Schema:
    return load_contract("inbox_index").schema()


@dataclass
class InboxIndex:
    table: pa.Table
    stats: dict[str, str] = field(default_factory=dict)  # folder -> files_stat

    @classmethod
    def empty(cls) -> InboxIndex:
        return cls(_schema().empty_table(), {})

    @classmethod
    def read(cls, path: str | Path) -> InboxIndex:
        path = Path(path)
        if not path.exists():
            return cls.empty()
        table = load_contract("inbox_index").validate(pq.read_table(path))
        return cls(table, dict(zip(table.column("folder").to_pylist(), table.column("files_stat").to_pylist())))

    def write(self, path: str | Path) -> None:
        write_parquet_atomic(self.table, path, load_contract("inbox_index"))

    def select(self, folders: list[str]) -> pa.Table:
        return self.table.filter(pc.is_in(self.table.column("folder"), value_set=pa.array(folders, pa.string())))


def folder_rows(folder: str, files_stat: str, rows: list[dict[str, Any]],
                records: list[QuarantineRecord]) -> list[dict[str, Any]]:
    """A freshly scanned folder as index rows (one per image row, or one placeholder); `index_table` makes them a table.

    Plain rows, not a table per folder: a first scan of 100,000 folders would otherwise hold as
    many small Arrow tables (about 17 KB of overhead each) until they are concatenated.
    """
    refusals = json.dumps([{"record_id": q.record_id, "reason_code": q.reason_code, "message": q.message,
                            "source_uri": q.source_uri} for q in records]) if records else None
    out = [{"folder": folder, "files_stat": files_stat, **{c: r.get(c) for c in ROW_COLUMNS}, "refusals": None}
           for r in rows] or [{"folder": folder, "files_stat": files_stat, "image_index": -1, "refusals": None}]
    out[0]["refusals"] = refusals
    return out


def index_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Index rows (from `folder_rows`) as one table of the index's schema."""
    return pa.Table.from_pylist(rows, schema=_schema())


def refusals_of(table: pa.Table) -> list[QuarantineRecord]:
    """The quarantine records kept in index rows, in row order."""
    col = table.column("refusals")
    out: list[QuarantineRecord] = []
    for text in col.filter(pc.is_valid(col)).to_pylist():
        out += [QuarantineRecord(STAGE, q["record_id"], q["reason_code"], q["message"], q["source_uri"])
                for q in json.loads(text)]
    return out
