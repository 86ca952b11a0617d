"""Sticky patient-level splits: decided once by hashing patient_key, then recorded for good.

Hashing makes the first assignment reproducible without state; recording it in
splits.parquet keeps it fixed even if the fractions change later (a patient never moves
between train and test, DESIGN §7).
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from radsim.data_contracts import UsageError, table_metadata, write_parquet_atomic
from radsim.data_contracts.ids import META_KEY_ID
from radsim.warehouse.layout import SPLITS_FILE as _SPLITS_FILE

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)  # of the patients seen for the first time (ShardOptions.split_fractions)
SPLITS_FILE = _SPLITS_FILE
SPLITS_SCHEMA = pa.schema(
    [pa.field("patient_key", pa.string(), nullable=False), pa.field("split", pa.string(), nullable=False)]
)


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise UsageError(f"split fractions must be three non-negative numbers summing to 1, got {tuple(fractions)}")
    return (float(fractions[0]), float(fractions[1]), float(fractions[2]))


def hash_split(patient_key: str, fractions: Sequence[float] = DEFAULT_FRACTIONS) -> str:
    """The split a patient gets the first time it is seen: a uniform hash against the fractions."""
    train, val, _ = check_fractions(fractions)
    u = int.from_bytes(hashlib.sha256(b"radsim-split:" + patient_key.encode()).digest()[:8], "big") / 2**64
    if u < train:
        return "train"
    if u < train + val:
        return "val"
    return "test"


def read_splits(path: str | Path, key_id: str | None = None) -> dict[str, str]:
    path = Path(path)
    if not path.exists():
        return {}
    table = pq.read_table(path)
    meta = table_metadata(table)
    if key_id is not None and meta.get(META_KEY_ID, key_id) != key_id:
        raise UsageError(f"{path} was made under another pseudonymisation key ({meta.get(META_KEY_ID)}, "
                         f"this run uses {key_id})")
    return dict(zip(table.column("patient_key").to_pylist(), table.column("split").to_pylist()))


def assign_splits(existing: dict[str, str], patient_keys: Iterable[str],
                  fractions: Sequence[float] = DEFAULT_FRACTIONS) -> tuple[dict[str, str], list[str]]:
    """Existing assignments kept; new patients hashed. Returns (all, new keys in first-seen order)."""
    out = dict(existing)
    new: list[str] = []
    for pk in patient_keys:
        if pk not in out:
            out[pk] = hash_split(pk, fractions)
            new.append(pk)
    return out, new


def write_splits(path: str | Path, splits: dict[str, str], key_id: str) -> None:
    table = pa.table({"patient_key": list(splits.keys()), "split": list(splits.values())}, schema=SPLITS_SCHEMA)
    table = table.replace_schema_metadata({META_KEY_ID: key_id, "radsim.privacy_class": "pseudonymised"})
    write_parquet_atomic(table, path)
