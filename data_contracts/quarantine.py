"""Quarantine: every refused record is kept with its reason, never dropped (DESIGN §5, §12)."""
from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import pyarrow as pa

from .contract import allowed_values, load_contract, rows_to_table

MAX_MESSAGE = 500


def reason_codes() -> tuple[str, ...]:
    """The reason codes the quarantine contract allows."""
    return tuple(allowed_values("quarantine", "reason_code"))


@dataclass(frozen=True)
class QuarantineRecord:
    stage: str
    record_id: str
    reason_code: str
    message: str
    source_uri: str | None = None
    seen_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def __post_init__(self) -> None:
        if self.reason_code not in reason_codes():
            raise ValueError(f"unknown quarantine reason code {self.reason_code!r}")

    def as_row(self) -> dict:
        return {
            "stage": self.stage,
            "record_id": str(self.record_id),
            "reason_code": self.reason_code,
            # Messages are single lines of bounded length: they may quote input.
            "message": " ".join(str(self.message).split())[:MAX_MESSAGE],
            "source_uri": self.source_uri,
            "seen_at": self.seen_at,
        }


def quarantine_table(records: list[QuarantineRecord]) -> pa.Table:
    """Records as a validated quarantine table; one row per (stage, record_id, reason_code)."""
    contract = load_contract("quarantine")
    unique: dict[tuple[str, str, str], dict] = {}
    for rec in records:
        row = rec.as_row()
        unique.setdefault((row["stage"], row["record_id"], row["reason_code"]), row)
    return contract.validate(rows_to_table(contract, unique.values()))


def merge_quarantine(old: pa.Table | None, new: pa.Table) -> pa.Table:
    """Append new rows to an existing quarantine table, keeping the first sighting of each key."""
    if old is None or old.num_rows == 0:
        return new
    contract = load_contract("quarantine")
    seen = {
        (r["stage"], r["record_id"], r["reason_code"])
        for r in old.select(["stage", "record_id", "reason_code"]).to_pylist()
    }
    rows = [r for r in new.to_pylist() if (r["stage"], r["record_id"], r["reason_code"]) not in seen]
    return contract.validate(pa.concat_tables([contract.validate(old), rows_to_table(contract, rows)]))


def reason_counts(records: Iterable[QuarantineRecord | str]) -> dict[str, int]:
    """How many records per reason code (records, or their reason codes), in first-seen order."""
    return dict(Counter(r if isinstance(r, str) else r.reason_code for r in records))
