"""Contracts are data: a YAML file per table becomes a pyarrow schema and a validator.

Validation runs on write and on read, so a stage never consumes a table that another
stage (or a site's export) got wrong. Errors name the table, column, rule and up to five
offending keys (DESIGN §5).
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import yaml

from .errors import ContractViolation
from .types import parse_type
from .vocabulary import Vocabulary, default_vocabulary

TABLES = ("exams", "labels", "quarantine", "shard_manifest", "embeddings", "evaluation", "ledger", "inbox_index",
          "published_versions")


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    required: bool  # non-null
    optional: bool = False  # the column itself may be absent in input; it is added as nulls
    default: Any = None
    allowed: tuple[Any, ...] | None = None
    minimum: float | None = None
    description: str = ""


@dataclass(frozen=True)
class Contract:
    name: str
    version: str
    privacy_class: str
    owner_stage: str
    primary_key: tuple[str, ...]
    columns: tuple[Column, ...]
    metadata: tuple[tuple[str, str], ...] = ()

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def schema(self) -> pa.Schema:
        fields = [pa.field(c.name, c.type, nullable=not c.required) for c in self.columns]
        meta = {
            "radsim.contract": self.name,
            "radsim.contract_version": self.version,
            "radsim.privacy_class": self.privacy_class,
            **dict(self.metadata),
        }
        return pa.schema(fields, metadata=meta)

    def empty(self) -> pa.Table:
        return self.schema().empty_table()

    def validate(self, table: pa.Table, extra_metadata: dict[str, str] | None = None) -> pa.Table:
        """Return `table` conformed to the contract (column order, types, metadata) or raise."""
        return validate_table(self, table, extra_metadata)


def _props(entry: dict[str, Any]) -> dict[str, Any]:
    return {p["property"]: p["value"] for p in entry.get("customProperties", []) or []}


def _build(doc: dict[str, Any], vocabulary: Vocabulary, params: dict[str, int]) -> Contract:
    top = _props(doc)
    (table_schema,) = doc["schema"]
    columns: list[Column] = []
    pk: list[tuple[int, str]] = []
    for entry in table_schema["properties"]:
        props = _props(entry)
        allowed = tuple(props["allowedValues"]) if "allowedValues" in props else None
        names = vocabulary.names if props.get("perFinding") else (entry["name"],)
        for name in names:
            required = bool(entry.get("required")) or name in props.get("requiredFor", [])
            columns.append(
                Column(
                    name=name,
                    type=parse_type(entry["physicalType"], params),
                    required=required,
                    optional=bool(props.get("optional", False)) or "default" in props,
                    default=props.get("default"),
                    allowed=allowed,
                    minimum=props.get("minimum"),
                    description=str(entry.get("description", "")),
                )
            )
            if entry.get("primaryKey"):
                pk.append((int(entry.get("primaryKeyPosition", len(pk) + 1)), name))
    meta: dict[str, str] = {}
    if top.get("parameterisedBy") == "vocabulary":
        meta.update(vocabulary.metadata())
    for key, value in params.items():
        meta[f"radsim.param.{key}"] = str(value)
    return Contract(
        name=str(doc["name"]),
        version=str(doc["version"]),
        privacy_class=str(top.get("privacyClass", "restricted")),
        owner_stage=str(top.get("ownerStage", "")),
        primary_key=tuple(n for _, n in sorted(pk)),
        columns=tuple(columns),
        metadata=tuple(sorted(meta.items())),
    )


@cache
def _raw(name: str) -> dict[str, Any]:
    if name not in TABLES:
        raise KeyError(f"no contract named {name!r}; known: {', '.join(TABLES)}")
    return yaml.safe_load(resources.files(__package__).joinpath(f"{name}.yaml").read_text(encoding="utf-8"))


def load_contract(name: str, vocabulary: Vocabulary | None = None, **params: int) -> Contract:
    """Load a table's contract; label tables need the vocabulary, embeddings need `D=`."""
    return _build(_raw(name), vocabulary or default_vocabulary(), params)


def allowed_values(name: str, column: str) -> tuple[Any, ...]:
    """The allowed values a contract lists for a column (e.g. the quarantine reason codes)."""
    allowed = load_contract(name).column(column).allowed
    return allowed or ()


# --------------------------------------------------------------------------- validation


def _key_strings(table: pa.Table, contract: Contract, mask: pa.Array | None = None) -> list[str]:
    keys = [k for k in contract.primary_key if k in table.column_names]
    if not keys:
        return []
    sub = table.select(keys)
    if mask is not None:
        sub = sub.filter(mask)
    rows = sub.slice(0, 5).to_pylist()
    return ["/".join(str(r[k]) for k in keys) for r in rows]


def _conform_column(contract: Contract, col: Column, table: pa.Table) -> pa.ChunkedArray:
    if col.name not in table.column_names:
        if col.optional:
            fill = pa.scalar(col.default, type=col.type) if col.default is not None else pa.nulls(1, col.type)[0]
            return pa.chunked_array([pa.array([fill.as_py()] * table.num_rows, type=col.type)], type=col.type)
        raise ContractViolation(contract.name, col.name, "required_column", "column is missing")
    arr = table.column(col.name)
    if arr.type != col.type:
        try:
            arr = arr.cast(col.type, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise ContractViolation(
                contract.name, col.name, "type", f"expected {col.type}, got {arr.type} ({str(exc).splitlines()[0]})"
            ) from None
    return arr


def validate_table(contract: Contract, table: pa.Table, extra_metadata: dict[str, str] | None = None) -> pa.Table:
    """Check columns, types, nulls, allowed values, minimums and key uniqueness."""
    if not isinstance(table, pa.Table):
        raise TypeError(f"expected a pyarrow.Table for '{contract.name}', got {type(table).__name__}")
    unknown = [c for c in table.column_names if c not in contract.column_names]
    if unknown:
        raise ContractViolation(
            contract.name, unknown[0], "unknown_column", f"columns not in the contract: {unknown[:5]}"
        )
    arrays = [_conform_column(contract, col, table) for col in contract.columns]
    out = pa.Table.from_arrays(arrays, schema=contract.schema().remove_metadata())
    for col in contract.columns:
        arr = out.column(col.name)
        if col.required and arr.null_count:
            raise ContractViolation(
                contract.name,
                col.name,
                "not_null",
                f"{arr.null_count} null value(s)",
                _key_strings(out, contract, pc.is_null(arr)),
            )
        if col.allowed is not None and (pa.types.is_primitive(arr.type) or pa.types.is_string(arr.type)):
            allowed = pa.array(list(col.allowed), type=arr.type)
            bad = pc.and_(pc.invert(pc.is_in(arr, value_set=allowed)), pc.is_valid(arr))
            n_bad = pc.sum(bad).as_py() or 0
            if n_bad:
                values = sorted({str(v) for v in arr.filter(bad).to_pylist()})[:5]
                raise ContractViolation(
                    contract.name, col.name, "allowed_values",
                    f"{n_bad} value(s) outside {list(col.allowed)}: {values}", _key_strings(out, contract, bad),
                )
        if col.minimum is not None:
            bad = pc.fill_null(pc.less(arr, col.minimum), False)
            if pc.any(bad).as_py():
                raise ContractViolation(
                    contract.name, col.name, "minimum", f"values below {col.minimum}", _key_strings(out, contract, bad)
                )
    _check_unique(contract, out)
    meta = dict(contract.schema().metadata or {})
    if extra_metadata:
        meta.update({k.encode(): v.encode() for k, v in extra_metadata.items()})
    return out.replace_schema_metadata(meta)


def _check_unique(contract: Contract, table: pa.Table) -> None:
    if not contract.primary_key or table.num_rows == 0:
        return
    keys = list(contract.primary_key)
    counts = table.group_by(keys, use_threads=False).aggregate([([], "count_all")])
    dup = counts.filter(pc.greater(counts.column("count_all"), 1))
    if dup.num_rows:
        shown = ["/".join(str(r[k]) for k in keys) for r in dup.slice(0, 5).to_pylist()]
        raise ContractViolation(contract.name, ",".join(keys), "unique_key", f"{dup.num_rows} duplicated key(s)", shown)


def table_metadata(table: pa.Table | pa.Schema) -> dict[str, str]:
    """A table's (or schema's) Parquet key-value metadata as text."""
    schema = table if isinstance(table, pa.Schema) else table.schema
    return {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}


def check_vocabulary(table: pa.Table, vocabulary: Vocabulary, table_name: str) -> None:
    """A label-bearing table written under another vocabulary cannot be mixed with this one."""
    meta = table_metadata(table)
    recorded = meta.get("radsim.vocabulary.findings")
    if recorded is not None and json.loads(recorded) != list(vocabulary.names):
        raise ContractViolation(
            table_name, None, "vocabulary",
            f"written with vocabulary {meta.get('radsim.vocabulary.name')!r} "
            f"({len(json.loads(recorded))} findings), expected {vocabulary.name!r} ({len(vocabulary)} findings)",
        )


def rows_to_table(contract: Contract, rows: Iterable[dict[str, Any]]) -> pa.Table:
    """Build a contract-shaped table from Python dicts (missing optional columns become null)."""
    rows = list(rows)
    data = {c.name: [r.get(c.name, c.default) for r in rows] for c in contract.columns}
    return pa.Table.from_pydict(data, schema=contract.schema())
