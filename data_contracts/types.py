"""Parse the contract's physical type strings into pyarrow types.

Only the handful of shapes radsim's tables use; an unknown type is a bug in a contract.
"""
from __future__ import annotations

import re

import pyarrow as pa

_SCALARS: dict[str, pa.DataType] = {
    "string": pa.string(),
    "bool": pa.bool_(),
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "date32": pa.date32(),
    "timestamp[us, UTC]": pa.timestamp("us", tz="UTC"),
}


def _split_fields(body: str) -> list[str]:
    """Split 'a: t1, b: list<t2>' at top-level commas."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(body):
        if ch in "<[":
            depth += 1
        elif ch in ">]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(body[start:i])
            start = i + 1
    parts.append(body[start:])
    return [p.strip() for p in parts if p.strip()]


def parse_type(spec: str, params: dict[str, int] | None = None) -> pa.DataType:
    """`fixed_size_list<float32>[{D}]` needs params={'D': 128}."""
    spec = spec.strip()
    if params:
        for name, value in params.items():
            spec = spec.replace("{" + name + "}", str(value))
    if spec in _SCALARS:
        return _SCALARS[spec]
    m = re.fullmatch(r"fixed_size_list<(.+)>\[(\d+)\]", spec)
    if m:
        return pa.list_(parse_type(m.group(1)), int(m.group(2)))
    m = re.fullmatch(r"list<(.+)>", spec)
    if m:
        return pa.list_(parse_type(m.group(1)))
    m = re.fullmatch(r"struct<(.+)>", spec)
    if m:
        fields = []
        for part in _split_fields(m.group(1)):
            fname, ftype = part.split(":", 1)
            fields.append(pa.field(fname.strip(), parse_type(ftype)))
        return pa.struct(fields)
    raise ValueError(f"unknown physicalType in contract: {spec!r}")
