"""Reading published versions: publish records, the version a reader gets, and verified opens.

A reader gets the version it names, else the current one (versions.parquet), else the one first
published last. `open_version` checks the folder against its publish record before anyone reads
it, so a changed, missing or extra part file is a clear error, never a silently different table.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from radsim.data_contracts import UsageError, load_contract, table_metadata
from radsim.data_contracts.atomic import sha256_file

from .layout import (
    EMBEDDINGS_DIR,
    MANIFESTS_DIR,
    META_FINDINGS,
    META_KEY_ID,
    META_MODEL_CARD,
    RECORD_FORMAT,
    VERSIONS_CONTRACT,
    check_version_name,
    record_path,
    version_dir,
    version_folders,
    versions_path,
)


def publish_order_key(record: dict[str, Any]) -> tuple[int, str]:
    """Versions in the order they were first published (exact within a second; names break ties only)."""
    ns = record.get("first_published_ns") or record.get("published_ns") or 0
    return int(ns), str(record.get("model_version", ""))


def published_versions(published_dir: str | Path) -> list[dict[str, Any]]:
    """Publish records, in the order of first publication (oldest first)."""
    folder = Path(published_dir) / MANIFESTS_DIR
    records = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and doc.get("format") == RECORD_FORMAT:
            records.append(doc)
    return sorted(records, key=publish_order_key)


def resolve_version(published_dir: str | Path, model_version: str | None) -> str:
    """The asked version, else the current one, else the one first published last; a clear error when none."""
    published_dir = Path(published_dir)
    if not (published_dir / EMBEDDINGS_DIR).is_dir() and not (published_dir / MANIFESTS_DIR).is_dir():
        raise UsageError(f"{published_dir} holds no published embeddings: run 'radsim publish' first")
    if model_version is not None:
        check_version_name(model_version)
        if not version_dir(published_dir, model_version).is_dir():
            known = sorted(version_folders(published_dir))
            raise UsageError(f"model version {model_version!r} is not published in {published_dir} "
                             f"(published: {', '.join(known) or 'none'})")
        return model_version
    current = current_version(published_dir)
    if current is not None:
        return current
    records = published_versions(published_dir)
    if not records:
        raise UsageError(
            f"no publish record in {published_dir / MANIFESTS_DIR}: publish again, or give --model-version"
        )
    return str(records[-1]["model_version"])


def read_record(published_dir: str | Path, model_version: str) -> dict[str, Any]:
    path = record_path(published_dir, model_version)
    if not path.exists():
        raise UsageError(
            f"publish record {path} is missing: the table for {model_version} is unverified; publish it again"
        )
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"publish record {path} is unreadable ({exc}); publish again") from None
    if not isinstance(doc, dict) or doc.get("format") != RECORD_FORMAT or doc.get("model_version") != model_version:
        raise UsageError(f"publish record {path} is not a radsim publish record for {model_version}")
    return doc


def _file_dim(schema: pa.Schema) -> int | None:
    idx = schema.get_field_index("embedding")
    t = schema.field(idx).type if idx >= 0 else None
    return t.list_size if t is not None and pa.types.is_fixed_size_list(t) else None


@dataclass
class PublishedVersion:
    """One verified model version: its record, part files and a few derived views."""

    published_dir: Path
    model_version: str
    record: dict[str, Any]
    files: list[Path]
    embedding_dim: int
    findings: list[str]
    key_id: str
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def checksum(self) -> str:
        return str(self.record["checksum"])

    def read(self, columns: Sequence[str] | None = None) -> pa.Table:
        try:
            tables = [pq.read_table(p, columns=list(columns) if columns else None) for p in self.files]
        except FileNotFoundError:
            raise UsageError(
                f"model version {self.model_version} was pruned or republished while it was read; read it again"
            ) from None
        except (pa.ArrowException, OSError) as exc:
            raise UsageError(
                f"corrupted Parquet file under {self.files[0].parent}: {str(exc).splitlines()[0]}"
            ) from None
        return pa.concat_tables(tables) if len(tables) > 1 else tables[0]

    def model_card(self) -> dict[str, Any]:
        try:
            return json.loads(self.metadata.get(META_MODEL_CARD, "{}"))
        except ValueError:
            return {}


def _folder_schemas(folder: Path, files: list[Path]) -> tuple[int, str | None, str | None, dict[str, str]]:
    """The one D, vocabulary and key the folder's files share, and the first file's metadata."""
    dims, vocabs, keys = set(), set(), set()
    meta: dict[str, str] = {}
    for path in files:
        try:
            schema = pq.read_schema(path)
        except FileNotFoundError:
            raise UsageError(f"{folder} changed while it was opened (a prune or a republish); open it again") from None
        except (pa.ArrowException, OSError) as exc:
            raise UsageError(f"corrupted Parquet file {path}: {str(exc).splitlines()[0]}") from None
        m = table_metadata(schema)
        meta = meta or m
        dims.add(_file_dim(schema))
        vocabs.add(m.get(META_FINDINGS))
        keys.add(m.get(META_KEY_ID))
    if len(dims) > 1 or None in dims:
        raise UsageError(
            f"{folder} mixes embedding sizes D={sorted(str(d) for d in dims)}: one version must have one D"
        )
    if len(vocabs) > 1:
        raise UsageError(f"{folder} mixes vocabularies ({len(vocabs)} different finding lists): republish the version")
    if len(keys) > 1:
        raise UsageError(f"{folder} mixes pseudonymisation keys {sorted(str(k) for k in keys)}")
    return dims.pop(), vocabs.pop(), keys.pop(), meta


def _check_against_record(folder: Path, files: list[Path], record: dict[str, Any], dim: int, verify: str) -> None:
    by_name = {p["file"]: p for p in record.get("parts") or []}
    names = [p.name for p in files]
    if sorted(by_name) != names:
        extra = sorted(set(names) - set(by_name))
        missing = sorted(set(by_name) - set(names))
        raise UsageError(
            f"{folder} does not match its publish record: unexpected {extra}, missing {missing}; publish again"
        )
    if int(record.get("embedding_dim", -1)) != dim:
        raise UsageError(f"publish record says D={record.get('embedding_dim')} but the table has D={dim}")
    for path in files:
        entry = by_name[path.name]
        if path.stat().st_size != entry["bytes"]:
            raise UsageError(
                f"{path} does not match its publish record (size {path.stat().st_size} != {entry['bytes']}); "
                "the file changed after publication: publish again"
            )
        if verify == "full" and sha256_file(path) != entry["sha256"]:
            raise UsageError(
                f"{path} does not match its publish record (checksum); the file changed after publication: "
                "publish again"
            )


def open_version(
    published_dir: str | Path, model_version: str | None = None, *, verify: str = "full"
) -> PublishedVersion:
    """Check a version before anyone reads it: record present, files readable and consistent, checksum equal.

    `verify="full"` re-hashes every part (what evaluate does); `"quick"` compares names,
    sizes and row counts only (for `similar` when its cached index matches the record).
    """
    if verify not in ("full", "quick"):
        raise ValueError(f"verify must be 'full' or 'quick', got {verify!r}")
    published_dir = Path(published_dir)
    version = resolve_version(published_dir, model_version)
    folder = version_dir(published_dir, version)
    if not folder.is_dir():
        raise UsageError(
            f"model version {version!r} has a publish record but no table folder {folder}; publish it again"
        )
    files = sorted(folder.glob("*.parquet"))
    if not files:
        raise UsageError(f"{folder} holds no Parquet file")
    dim, vocab, key_id, meta = _folder_schemas(folder, files)
    record = read_record(published_dir, version)
    try:
        _check_against_record(folder, files, record, dim, verify)
    except FileNotFoundError:
        raise UsageError(f"{folder} changed while it was opened (a prune or a republish); open it again") from None
    return PublishedVersion(published_dir, version, record, files, dim, json.loads(vocab or "[]"), key_id or "", meta)


def read_versions(published_dir: str | Path) -> pa.Table | None:
    """The versions table, checked against its contract; None where none was written yet."""
    path = versions_path(published_dir)
    if not path.exists():
        return None
    try:  # one open file: a path read stats and opens separately, and a rename in between tears it
        with path.open("rb") as handle:
            table = pq.read_table(handle)
    except (pa.ArrowException, OSError) as exc:
        raise UsageError(f"{path} is unreadable ({str(exc).splitlines()[0]}); publish again to rewrite it") from None
    return load_contract(VERSIONS_CONTRACT).validate(table)


def current_entry(published_dir: str | Path) -> dict[str, Any] | None:
    table = read_versions(published_dir)
    rows = [r for r in table.to_pylist() if r["current"]] if table is not None else []
    return rows[0] if rows else None


def current_version(published_dir: str | Path) -> str | None:
    """The version analysts should use, or None when no publication made one current."""
    entry = current_entry(published_dir)
    return entry["model_version"] if entry else None
