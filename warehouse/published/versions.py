"""The versions table (PUBLISHED_DIR/versions.parquet): what is published, in which order, and which is current.

Analysts choose the version to read here. Version names start with the backbone, so sorting
names is no order at all; the table orders versions by first publication and names exactly one
current version, the one the last promotion chose. Every publication, promotion and prune
rewrites it in one atomic rename, under the publish lock, from the publish records and the
previous table, so it is always derived from what is on disk.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from radsim.data_contracts import UsageError, load_contract, write_parquet_atomic

from .layout import VERSIONS_CONTRACT, version_dir, versions_path
from .read import current_entry, published_versions

KEEP = object()  # write_versions(current=KEEP): the current version stays what it was


def _time(record: dict[str, Any], key: str) -> datetime:
    """A record's time in ns, or its `published_at` text (records of earlier releases)."""
    ns = record.get(key) or record.get("published_ns")
    if ns:
        return datetime.fromtimestamp(int(ns) / 1e9, tz=UTC)
    text = str(record.get("published_at") or "1970-01-01T00:00:00Z")
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def write_versions(published_dir: str | Path, *, current: Any = KEEP, reason: str | None = None,
                   exclude: Sequence[str] = ()) -> pa.Table:
    """Rewrite versions.parquet from the publish records (the caller holds the publish lock).

    `current` names the new current version (it must be published), KEEP leaves it as it was,
    a current version that is no longer published (pruned by hand) is dropped, and `exclude`
    leaves out versions a prune is about to remove.
    """
    published_dir = Path(published_dir)
    previous = current_entry(published_dir)
    if current is KEEP:
        name, since, why = ((previous["model_version"], previous["current_since"], previous["reason"])
                            if previous else (None, None, None))
    else:
        name = current
        if previous and previous["model_version"] == name:
            since, why = previous["current_since"], reason or previous["reason"]
        else:
            since, why = datetime.now(UTC), reason
    rows = []
    records = [r for r in published_versions(published_dir)
               if r["model_version"] not in exclude and version_dir(published_dir, r["model_version"]).is_dir()]
    if current is not KEEP and name is not None and name not in {r["model_version"] for r in records}:
        raise UsageError(f"model version {name!r} is not published in {published_dir}: it cannot be made current")
    for order, rec in enumerate(records, start=1):
        is_current = rec["model_version"] == name
        rows.append({"model_version": rec["model_version"],
                     "first_published_at": _time(rec, "first_published_ns"),
                     "published_at": _time(rec, "published_ns"), "publish_order": order,
                     "rows": int(rec["rows"]), "embedding_dim": int(rec["embedding_dim"]), "current": is_current,
                     "current_since": since if is_current else None,
                     "reason": why if is_current else rec.get("gate_decision")})
    contract = load_contract(VERSIONS_CONTRACT)
    table = pa.Table.from_pylist(rows, schema=contract.schema())
    write_parquet_atomic(table, versions_path(published_dir), contract)
    return table
