"""The warehouse's accumulated labels: merge a run's new or re-labelled exams into restricted/labels.parquet.

A run labels only new exams and amended reports; their old rows are replaced, every other row
is kept, and the file is rewritten atomically. Published label values are taken from here at
publish time (not from the shards, which keep the labels an exam had when it was sharded), so
an amended report re-publishes with its new labels without touching the shards.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from radsim.data_contracts import Vocabulary, load_contract, write_parquet_atomic


def merge_labels(path: str | Path, new: pa.Table | None, replaced: Iterable[str], vocabulary: Vocabulary) -> pa.Table:
    """Old rows minus `replaced` exam ids, plus `new`; written atomically to `path` and returned."""
    path = Path(path)
    contract = load_contract("labels", vocabulary)
    old = pq.read_table(path) if path.exists() else None
    drop = pa.array(sorted(set(replaced) | set(new.column("exam_id").to_pylist() if new is not None else [])),
                    pa.string())
    parts = []
    if old is not None and old.num_rows:
        parts.append(old.filter(pc.invert(pc.is_in(old.column("exam_id"), value_set=drop))))
    if new is not None and new.num_rows:
        parts.append(new)
    if not parts:
        merged = contract.empty()
        meta = dict(old.schema.metadata or {}) if old is not None else {}
    else:
        schema = parts[-1].schema
        merged = pa.concat_tables([p.select(schema.names).cast(schema) for p in parts])
        meta = dict(schema.metadata or {})
    merged = merged.sort_by("exam_id") if merged.num_rows else merged
    merged = merged.replace_schema_metadata(meta or None)
    write_parquet_atomic(merged, path)
    return merged


def label_values_by_key(labels: pa.Table, exam_keys: dict[str, str], findings: Sequence[str]) -> dict[str, list[Any]]:
    """exam_key → label values in `findings` order, for the exams that have a labels row."""
    cols = [labels.column(f).to_pylist() if f in labels.column_names else [None] * labels.num_rows for f in findings]
    out = {}
    for i, eid in enumerate(labels.column("exam_id").to_pylist()):
        key = exam_keys.get(eid)
        if key is not None:
            out[key] = [None if col[i] is None else int(col[i]) for col in cols]
    return out


def relabel(label_values: list[Any], exam_keys: Sequence[str], current: dict[str, list[Any]]) -> list[Any]:
    """The published label values: the warehouse's current labels, None for exams without a report yet."""
    return [current.get(k) for k in exam_keys]


def relabel_from_file(embedded: Any, labels_path: str | Path, ledger: pa.Table) -> Any:
    """Give embedded rows the warehouse's current label values (amended reports included)."""
    if not Path(labels_path).exists():
        return embedded
    keys = dict(zip(ledger.column("exam_id").to_pylist(), ledger.column("exam_key").to_pylist()))
    current = label_values_by_key(pq.read_table(labels_path), keys, embedded.vocabulary["findings"])
    embedded.label_values = relabel(embedded.label_values, embedded.exam_keys, current)
    return embedded
