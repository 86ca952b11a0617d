"""Publishing a version atomically: stage outside the table, validate, read back, rename into place.

When the version exists already, the old and new folders are exchanged in one
`renameat2(RENAME_EXCHANGE)` where Linux offers it (two renames elsewhere, with a window in which
the version is absent but never partial). On object stores there is no rename, so publication
there is not atomic; a table format such as Delta would be the fix.

Each publication's files carry its own id in their names, so a reader that lists a folder and
opens a file after a swap gets "no such file" (read again), never the footer of one publication
with the data of another.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from radsim.data_contracts import UsageError, load_contract
from radsim.data_contracts.atomic import sha256_file, write_json_atomic

from .layout import (
    EMBEDDINGS_DIR,
    META_FINDINGS,
    META_KEY_ID,
    PART_NAME,
    RECORD_FORMAT,
    ROW_GROUP_SIZE,
    ROWS_PER_FILE,
    check_version_name,
    clean_staging,
    migrate_legacy_layout,
    publish_lock,
    record_path,
    staging_dir,
    version_dir,
)
from .prune import finish_interrupted_prune
from .read import read_record
from .versions import KEEP, write_versions


@dataclass
class PublishResult:
    model_version: str
    rows: int
    path: Path
    record_path: Path
    record: dict[str, Any]
    replaced: bool
    seconds: float

    def summary(self) -> str:
        verb = "replaced" if self.replaced else "published"
        return (f"publish: {verb} model version {self.model_version}: {self.rows} rows "
                f"(D={self.record['embedding_dim']}) in {self.path} [{self.seconds:.1f} s]")


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with renameat2(RENAME_EXCHANGE); False when the OS cannot."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_parts(table: pa.Table, folder: Path, *, publish_id: str, rows_per_file: int = ROWS_PER_FILE,
                row_group_size: int = ROW_GROUP_SIZE) -> list[Path]:
    """Part files with ~64k-row groups and no dictionary encoding (keys and vectors do not repeat).

    Each publication's files carry its own id in their names: a reader that lists the folder
    and opens a file after a swap gets "no such file" (retry), never the footer of one
    publication with the data of another.
    """
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, start in enumerate(range(0, max(table.num_rows, 1), rows_per_file)):
        path = folder / PART_NAME.format(i, publish_id)
        with pq.ParquetWriter(path, table.schema, use_dictionary=False, compression="snappy",
                              write_statistics=["exam_key", "image_index", "model_version", "split", "view_position",
                                                "no_finding"]) as w:
            w.write_table(table.slice(start, rows_per_file), row_group_size=row_group_size)
            paths.append(path)
        with open(path, "rb+") as fh:
            os.fsync(fh.fileno())
    return paths


def _part_entries(folder: Path, paths: Sequence[Path]) -> list[dict[str, Any]]:
    return [{"file": p.name, "sha256": sha256_file(p), "bytes": p.stat().st_size, "rows": pq.read_metadata(p).num_rows}
            for p in paths]


def record_checksum(parts: Sequence[dict[str, Any]]) -> str:
    """One sha256 for the version: of the part names and their sha256s, in order."""
    return hashlib.sha256("\n".join(f"{p['file']} {p['sha256']}" for p in parts).encode()).hexdigest()


def publish_table(table: pa.Table, published_dir: str | Path, *, model_version: str, embedding_dim: int,
                  extra_metadata: dict[str, str], record_extra: dict[str, Any] | None = None,
                  rows_per_file: int = ROWS_PER_FILE, row_group_size: int = ROW_GROUP_SIZE,
                  make_current: bool = False, current_reason: str | None = None) -> PublishResult:
    """Validate, stage, read back, then rename (or exchange) the version into place and write its record.

    The versions table is rewritten last: with `make_current` this version becomes the current one
    (a promotion); otherwise the current version stays what it was.

    Wide on purpose: the table and its version, then the publication's own knobs (file layout, current flag
    and reason), each with a default.
    """
    t0 = time.perf_counter()
    check_version_name(model_version)
    published_dir = Path(published_dir)
    contract = load_contract("embeddings", D=int(embedding_dim))
    table = contract.validate(table, extra_metadata)
    if table.num_rows and pc.any(pc.not_equal(table.column("model_version"), model_version)).as_py():
        raise UsageError(f"rows of another model version in the table for {model_version}")
    try:
        (published_dir / EMBEDDINGS_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot write to {published_dir}: {exc.strerror}") from None
    with publish_lock(published_dir):
        finish_interrupted_prune(published_dir)
        clean_staging(published_dir)
        migrate_legacy_layout(published_dir)
        publish_id = uuid.uuid4().hex[:12]
        stage = staging_dir(published_dir) / f"{model_version}-{os.getpid()}-{publish_id}"
        target = version_dir(published_dir, model_version)
        previous = _previous_record(published_dir, model_version) if target.exists() else None
        try:
            parts = _stage_parts(table, stage / model_version, publish_id, rows_per_file, row_group_size)
            replaced = _move_into_place(stage / model_version, target, stage)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        record = {**_record(model_version, table.num_rows, int(embedding_dim), contract, extra_metadata, parts,
                            publish_id, previous), **(record_extra or {})}
        rpath = write_json_atomic(record_path(published_dir, model_version), record)
        write_versions(published_dir, current=model_version if make_current else KEEP, reason=current_reason)
    return PublishResult(model_version, table.num_rows, target, rpath, record, replaced, time.perf_counter() - t0)


def _stage_parts(table: pa.Table, folder: Path, publish_id: str, rows_per_file: int,
                 row_group_size: int) -> list[dict[str, Any]]:
    """Write the parts into the staging folder and check what is on disk is whole.

    The table was validated in memory; here each footer must parse, with the contract's schema,
    and the row counts must add up.
    """
    paths = write_parts(table, folder, publish_id=publish_id, rows_per_file=rows_per_file,
                        row_group_size=row_group_size)
    rows_on_disk = 0
    for path in paths:
        meta_file = pq.read_metadata(path)
        if not meta_file.schema.to_arrow_schema().remove_metadata().equals(table.schema.remove_metadata()):
            raise UsageError(f"staged file {path.name} does not have the embeddings contract's schema")
        rows_on_disk += meta_file.num_rows
    if rows_on_disk != table.num_rows:
        raise UsageError(f"staged table has {rows_on_disk} rows, expected {table.num_rows}")
    parts = _part_entries(folder, paths)
    fsync_dir(folder)
    return parts


def _move_into_place(new: Path, target: Path, stage: Path) -> bool:
    """Rename the staged folder into place, or exchange it with the old one; True when it replaced one."""
    replaced = target.exists()
    if replaced:
        if not _exchange(new, target):  # fallback: a brief gap, never a partial table
            os.rename(target, stage / "old")
            os.rename(new, target)
    else:
        os.rename(new, target)
    fsync_dir(target.parent)
    return replaced


def _record(model_version: str, rows: int, embedding_dim: int, contract: Any, extra_metadata: dict[str, str],
            parts: list[dict[str, Any]], publish_id: str, previous: dict[str, Any] | None) -> dict[str, Any]:
    """The publish record: what a verified read checks the folder against."""
    now_ns = time.time_ns()
    previous = previous or {}
    return {
        "format": RECORD_FORMAT,
        "model_version": model_version,
        "rows": rows,
        "publish_id": publish_id,
        "embedding_dim": embedding_dim,
        "contract": contract.name,
        "contract_version": contract.version,
        "key_id": extra_metadata.get(META_KEY_ID),
        "vocabulary": {
            "name": extra_metadata.get("radsim.vocabulary.name"),
            "version": extra_metadata.get("radsim.vocabulary.version"),
            "findings": json.loads(extra_metadata.get(META_FINDINGS, "[]")),
        },
        "path": f"{EMBEDDINGS_DIR}/{model_version}",
        "parts": parts,
        "checksum": record_checksum(parts),
        "published_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_ns / 1e9)),
        "published_ns": now_ns,  # orders publications within the same second
        "first_published_ns": int(previous.get("first_published_ns") or previous.get("published_ns") or now_ns),
    }


def _previous_record(published_dir: Path, model_version: str) -> dict[str, Any] | None:
    try:
        return read_record(published_dir, model_version)
    except UsageError:
        return None
