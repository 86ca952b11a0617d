"""The shard folder's manifest and its side tables: what is committed, under which key and size.

`manifest.parquet` lists every committed sample (the commit point of each shard: a tar that it
does not list is an orphan of a crash); `sources.parquet` keeps each sample's keyed source digest
so an unchanged file is skipped without decoding. Both are rewritten atomically.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from radsim.data_contracts import (
    UsageError,
    Vocabulary,
    check_vocabulary,
    load_contract,
    rows_to_table,
    table_metadata,
    write_parquet_atomic,
)
from radsim.data_contracts.ids import META_KEY_ID as _META_KEY_ID
from radsim.warehouse.layout import MANIFEST_FILE as _MANIFEST_FILE
from radsim.warehouse.layout import SOURCES_FILE as _SOURCES_FILE

MANIFEST_FILE = _MANIFEST_FILE


SOURCES_FILE = _SOURCES_FILE  # sample_key → keyed digest of the source file (fast skip)


SHARD_NAME = "shard-{:06d}.tar"


SHARD_RE = re.compile(r"^shard-(\d{6,})\.tar$")


META_KEY_ID = _META_KEY_ID


META_IMAGE_SIZE = "radsim.image_size"




def read_manifest(out_dir: str | Path) -> pa.Table | None:
    path = Path(out_dir) / MANIFEST_FILE
    return pq.read_table(path) if path.exists() else None


def load_manifest(out_dir: Path, contract: Any, metadata: dict[str, str], vocabulary: Vocabulary) -> pa.Table:
    existing = read_manifest(out_dir)
    if existing is None:
        return contract.validate(contract.empty(), metadata)
    meta = table_metadata(existing)
    if meta.get(META_KEY_ID) != metadata[META_KEY_ID]:
        raise UsageError(f"{out_dir / MANIFEST_FILE} was made under another pseudonymisation key "
                         f"(key_id {meta.get(META_KEY_ID)}, this run uses {metadata[META_KEY_ID]}); use a new folder")
    if meta.get(META_IMAGE_SIZE) != metadata[META_IMAGE_SIZE]:
        raise UsageError(f"shards in {out_dir} are {meta.get(META_IMAGE_SIZE)} px; rerun with "
                         f"--image-size {meta.get(META_IMAGE_SIZE)} or use a new folder")
    check_vocabulary(existing, vocabulary, "shard_manifest")
    return contract.validate(existing, metadata)


def remove_orphans(out_dir: Path, listed: set[str]) -> list[str]:
    """Shards not in the manifest come from a crash between rename and manifest append."""
    removed: list[str] = []
    for p in sorted(out_dir.iterdir()):
        if p.name.startswith(".shard-") and p.name.endswith(".tar.tmp"):
            p.unlink()
        elif SHARD_RE.match(p.name) and p.name not in listed:
            p.unlink()
            removed.append(p.name)
    return removed


def read_sources(out_dir: Path, key_id: str) -> dict[str, str]:
    path = out_dir / SOURCES_FILE
    if not path.exists():
        return {}
    table = pq.read_table(path)
    if table_metadata(table).get(META_KEY_ID) != key_id:
        return {}
    return dict(zip(table.column("sample_key").to_pylist(), table.column("source_digest").to_pylist()))


def write_sources(out_dir: Path, sources: dict[str, str], key_id: str) -> None:
    table = pa.table(
        {
            "sample_key": pa.array(list(sources), pa.string()),
            "source_digest": pa.array(list(sources.values()), pa.string()),
        }
    )
    write_parquet_atomic(table.replace_schema_metadata({META_KEY_ID: key_id}), out_dir / SOURCES_FILE)


def append_rows(out_dir: Path, manifest: pa.Table, rows: list[dict[str, Any]], vocabulary: Vocabulary,
                metadata: dict[str, str]) -> pa.Table:
    """The manifest with a committed shard's rows added, rewritten atomically (temp + rename)."""
    contract = load_contract("shard_manifest", vocabulary)
    manifest = pa.concat_tables([manifest, contract.validate(rows_to_table(contract, rows), metadata)])
    write_parquet_atomic(manifest, out_dir / MANIFEST_FILE, contract, metadata)
    return manifest


def manifest_metadata(shard_dir: str | Path) -> dict[str, str]:
    """The manifest's metadata (key id, image size, vocabulary) without reading its rows."""
    path = Path(shard_dir) / MANIFEST_FILE
    if not path.exists():
        raise UsageError(f"no {MANIFEST_FILE} in {shard_dir}: run 'radsim shard' first")
    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise UsageError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    return table_metadata(schema)  # outside the try: a bug here is not an unreadable file
