"""Is this run's pseudonymisation key the warehouse's? Asked before any stage writes anything.

A worker started with another RADSIM_ID_KEY would hash every id differently: its labels, shards
and published rows could never be joined with the warehouse's. Each pseudonymised table records
the `key_id` (a public fingerprint of the key) it was written under; the ledger's first row shows
which key made its exam keys. A mismatch stops the run at once, naming both key_ids; the fix is
to run with the warehouse's key, never to start a new folder (that forks the warehouse).
"""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from radsim.data_contracts import IdKeyer, UsageError
from radsim.data_contracts.ids import META_KEY_ID
from radsim.warehouse.layout import MANIFEST_FILE, SPLITS_FILE

KEY_ID = META_KEY_ID.encode()


def _parquet_key_id(path: Path) -> str | None:
    if not path.exists():
        return None
    value = (pq.read_schema(path).metadata or {}).get(KEY_ID)
    return value.decode() if value else None


def recorded_key_ids(root: str | Path) -> dict[str, str]:
    """Where a key_id is recorded in the warehouse → that key_id."""
    root = Path(root)
    found: dict[str, str] = {}
    for rel in (f"shards/{MANIFEST_FILE}", f"shards/{SPLITS_FILE}"):
        key_id = _parquet_key_id(root / rel)
        if key_id:
            found[rel] = key_id
    records = sorted((root / "published" / "_manifests").glob("*.json")) if (root / "published").exists() else []
    for path in records[-1:]:  # the newest publish record
        try:
            key_id = json.loads(path.read_text(encoding="utf-8")).get("key_id")
        except (OSError, ValueError):
            continue
        if key_id:
            found[path.relative_to(root).as_posix()] = key_id
    return found


def check_warehouse_key(root: str | Path, keyer: IdKeyer) -> None:
    """A one-line UsageError (exit 2) when the warehouse was written under another key; else nothing."""
    root = Path(root)
    for where, key_id in recorded_key_ids(root).items():
        if key_id != keyer.key_id:
            raise UsageError(f"this warehouse was written under key_id {key_id} ({where}), but RADSIM_ID_KEY gives "
                             f"key_id {keyer.key_id}: run with the warehouse's key. Nothing was written")
    from radsim.warehouse.ledger import read_ledger

    ledger = read_ledger(root)
    if ledger.num_rows:
        exam_id, exam_key = ledger.column("exam_id")[0].as_py(), ledger.column("exam_key")[0].as_py()
        if keyer.exam_key(exam_id) != exam_key:
            raise UsageError(f"the ledger's exam keys were made with another key than RADSIM_ID_KEY (key_id "
                             f"{keyer.key_id}): run with the warehouse's key. Nothing was written")
