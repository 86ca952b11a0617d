"""The published embeddings store: atomic writes, publish records and verified reads (DESIGN §4, §12).

    PUBLISHED_DIR/
      embeddings/model_version=<v>/part-*.parquet      the only Parquet files under PUBLISHED_DIR
      _manifests/<v>.json                                 publish record: rows, sha256 of each part, contract, D, ...
    beside it (same filesystem, so a rename moves a folder in one step):
      .radsim-staging/<published name>/                  transient: a version being written, and the lock
      index/                                              similar-exam FAISS indexes (radsim.evaluation.similar)

Why stage outside PUBLISHED_DIR (DESIGN §12): polars and duckdb read files whose names start
with `.` or `_` too, so a half-written part file anywhere under a folder an analyst globs
would be read. The new version is written, read back and validated in the staging folder,
then moved in with one rename.
When the version exists already, the old and new folders are exchanged in one
`renameat2(RENAME_EXCHANGE)` where Linux offers it (two renames elsewhere, with a window
in which the version is absent but never partial). On object stores there is no rename,
so publication there is not atomic; a table format such as Delta would be the fix.

pyarrow and numpy only (no torch): evaluation and `similar` read through this module, and
the model's publish step writes through it.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from radsim.data_contracts import UsageError, load_contract

EMBEDDINGS_DIR = "embeddings"
MANIFESTS_DIR = "_manifests"
STAGING_DIR = ".radsim-staging"
INDEX_DIR = "index"


def staging_dir(published_dir: Path) -> Path:
    """Where versions are written before they move in: beside PUBLISHED_DIR, never under it."""
    published_dir = Path(published_dir).resolve()
    return published_dir.parent / STAGING_DIR / published_dir.name


def default_index_dir(published_dir: str | Path) -> Path:
    """The FAISS cache beside PUBLISHED_DIR (DESIGN §4 `warehouse/index/`)."""
    return Path(published_dir).resolve().parent / INDEX_DIR
PART_NAME = "part-{:05d}-{}.parquet"  # index, publish id: a path never names two different files
ROW_GROUP_SIZE = 65_536
ROWS_PER_FILE = 4_000_000
RECORD_FORMAT = "radsim-publish-record/1"

META_KEY_ID = "radsim.key_id"
META_MODEL_VERSION = "radsim.model_version"
META_MODEL_CARD = "radsim.model_card"
META_D = "radsim.param.D"
META_FINDINGS = "radsim.vocabulary.findings"
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


# ------------------------------------------------------------------------------ layout
def version_dir(published_dir: str | Path, model_version: str) -> Path:
    return Path(published_dir) / EMBEDDINGS_DIR / f"model_version={model_version}"


def record_path(published_dir: str | Path, model_version: str) -> Path:
    return Path(published_dir) / MANIFESTS_DIR / f"{model_version}.json"


def check_version_name(model_version: str) -> str:
    """A version becomes a folder and a file name: no slashes, no `=`, no leading dot."""
    if not isinstance(model_version, str) or not _VERSION_RE.match(model_version):
        raise UsageError(f"model version {model_version!r} cannot be published: use letters, digits, '.', '_', '+', '-'")
    return model_version


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _write_json_atomic(doc: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# --------------------------------------------------------------------- building a table
def embeddings_table(
    *,
    exam_keys: Sequence[str],
    image_index: Sequence[int],
    splits: Sequence[str],
    view_positions: Sequence[str | None],
    embeddings: np.ndarray,
    label_values: Sequence[Sequence[int | None] | None],
    findings: Sequence[str],
    model_version: str,
    key_id: str,
) -> pa.Table:
    """Rows of the embeddings contract; `label_values[i]` is None for an unlabelled image.

    positive_findings lists the findings whose value is 1 (no_finding included), so a
    reader rebuilds the label set the metrics use; uncertain values are not published.
    """
    emb = np.ascontiguousarray(embeddings, dtype=np.float32)
    n, dim = emb.shape if emb.ndim == 2 else (0, 0)
    if emb.ndim != 2 or n != len(exam_keys):
        raise ValueError(f"embeddings shape {emb.shape} does not fit {len(exam_keys)} rows")
    findings = list(findings)
    nf_index = findings.index("no_finding") if "no_finding" in findings else None
    positives: list[list[str] | None] = []
    normal: list[int | None] = []
    for values in label_values:
        if values is None:
            positives.append(None)
            normal.append(None)
            continue
        positives.append([f for f, v in zip(findings, values) if v is not None and int(v) == 1])
        normal.append(1 if nf_index is not None and values[nf_index] is not None and int(values[nf_index]) == 1 else 0)
    flat = pa.array(emb.reshape(-1), type=pa.float32())
    return pa.table({
        "exam_key": pa.array(list(exam_keys), pa.string()),
        "image_index": pa.array(list(image_index), pa.int32()),
        "model_version": pa.array([model_version] * n, pa.string()),
        "split": pa.array(list(splits), pa.string()),
        "view_position": pa.array(list(view_positions), pa.string()),
        "embedding": pa.FixedSizeListArray.from_arrays(flat, dim),
        "positive_findings": pa.array(positives, pa.list_(pa.string())),
        "no_finding": pa.array(normal, pa.int8()),
        "key_id": pa.array([key_id] * n, pa.string()),
    })


def table_metadata_for(*, model_version: str, key_id: str, findings: Sequence[str], vocabulary_name: str,
                       vocabulary_version: str, model_card: dict[str, Any] | None) -> dict[str, str]:
    """Schema metadata beyond the contract's own: key, model, vocabulary, card."""
    return {
        META_KEY_ID: key_id,
        META_MODEL_VERSION: model_version,
        "radsim.vocabulary.name": vocabulary_name,
        "radsim.vocabulary.version": vocabulary_version,
        META_FINDINGS: json.dumps(list(findings)),
        META_MODEL_CARD: json.dumps(model_card or {}, sort_keys=True),
    }


# ------------------------------------------------------------------------ atomic publish
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


@contextlib.contextmanager
def _publish_lock(published_dir: Path) -> Iterator[None]:
    """One publisher per folder at a time; the lock lives in the staging folder, outside the table."""
    folder = staging_dir(published_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "publish.lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(f"another publish is running in {published_dir}") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _clean_staging(published_dir: Path) -> list[str]:
    """Remove what a crashed publish left in staging (we hold the lock, so nobody else is writing)."""
    removed = []
    for entry in staging_dir(published_dir).iterdir():
        if entry.name == "publish.lock":
            continue
        shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
        removed.append(entry.name)
    return removed


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


def _fsync_dir(path: Path) -> None:
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
                              write_statistics=["exam_key", "image_index", "split", "view_position", "no_finding"]) as w:
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
                  rows_per_file: int = ROWS_PER_FILE, row_group_size: int = ROW_GROUP_SIZE) -> PublishResult:
    """Validate, stage, read back, then rename (or exchange) the version into place and write its record."""
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
    with _publish_lock(published_dir):
        _clean_staging(published_dir)
        publish_id = uuid.uuid4().hex[:12]
        stage = staging_dir(published_dir) / f"{model_version}-{os.getpid()}-{publish_id}"
        new = stage / f"model_version={model_version}"
        try:
            paths = write_parts(table, new, publish_id=publish_id, rows_per_file=rows_per_file,
                                row_group_size=row_group_size)
            # The table was validated in memory; check what is on disk is whole: each footer
            # parses, with the contract's schema, and the row counts add up.
            rows_on_disk = 0
            for path in paths:
                meta_file = pq.read_metadata(path)
                if not meta_file.schema.to_arrow_schema().remove_metadata().equals(table.schema.remove_metadata()):
                    raise UsageError(f"staged file {path.name} does not have the embeddings contract's schema")
                rows_on_disk += meta_file.num_rows
            if rows_on_disk != table.num_rows:
                raise UsageError(f"staged table has {rows_on_disk} rows, expected {table.num_rows}")
            parts = _part_entries(new, paths)
            _fsync_dir(new)
            target = version_dir(published_dir, model_version)
            replaced = target.exists()
            if replaced:
                if not _exchange(new, target):  # fallback: a brief gap, never a partial table
                    old = stage / "old"
                    os.rename(target, old)
                    os.rename(new, target)
            else:
                os.rename(new, target)
            _fsync_dir(target.parent)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        record = {
            "format": RECORD_FORMAT,
            "model_version": model_version,
            "rows": table.num_rows,
            "publish_id": publish_id,
            "embedding_dim": int(embedding_dim),
            "contract": contract.name,
            "contract_version": contract.version,
            "key_id": extra_metadata.get(META_KEY_ID),
            "vocabulary": {
                "name": extra_metadata.get("radsim.vocabulary.name"),
                "version": extra_metadata.get("radsim.vocabulary.version"),
                "findings": json.loads(extra_metadata.get(META_FINDINGS, "[]")),
            },
            "path": f"{EMBEDDINGS_DIR}/model_version={model_version}",
            "parts": parts,
            "checksum": record_checksum(parts),
            "published_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "published_ns": time.time_ns(),  # orders publications within the same second
            **(record_extra or {}),
        }
        rpath = record_path(published_dir, model_version)
        _write_json_atomic(record, rpath)
    return PublishResult(model_version, table.num_rows, target, rpath, record, replaced, time.perf_counter() - t0)


# ------------------------------------------------------------------------------ reading
def published_versions(published_dir: str | Path) -> list[dict[str, Any]]:
    """Publish records, oldest first (by publication time, then name)."""
    folder = Path(published_dir) / MANIFESTS_DIR
    records = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and doc.get("format") == RECORD_FORMAT:
            records.append(doc)
    return sorted(records, key=lambda d: (int(d.get("published_ns") or 0), str(d.get("published_at", "")),
                                          str(d.get("model_version", ""))))


def resolve_version(published_dir: str | Path, model_version: str | None) -> str:
    """The asked version, or the newest publish record; a clear error when there is none."""
    published_dir = Path(published_dir)
    if not (published_dir / EMBEDDINGS_DIR).is_dir() and not (published_dir / MANIFESTS_DIR).is_dir():
        raise UsageError(f"{published_dir} holds no published embeddings: run 'radsim publish' first")
    if model_version is not None:
        check_version_name(model_version)
        if not version_dir(published_dir, model_version).is_dir():
            known = [d.name.split("=", 1)[1] for d in sorted((published_dir / EMBEDDINGS_DIR).glob("model_version=*"))]
            raise UsageError(f"model version {model_version!r} is not published in {published_dir} "
                             f"(published: {', '.join(known) or 'none'})")
        return model_version
    records = published_versions(published_dir)
    if not records:
        raise UsageError(f"no publish record in {published_dir / MANIFESTS_DIR}: publish again, or give --model-version")
    return str(records[-1]["model_version"])


def read_record(published_dir: str | Path, model_version: str) -> dict[str, Any]:
    path = record_path(published_dir, model_version)
    if not path.exists():
        raise UsageError(f"publish record {path} is missing: the table for {model_version} is unverified; publish it again")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"publish record {path} is unreadable ({exc}); publish again") from None
    if not isinstance(doc, dict) or doc.get("format") != RECORD_FORMAT or doc.get("model_version") != model_version:
        raise UsageError(f"publish record {path} is not a radsim publish record for {model_version}")
    return doc


def _schema_meta(schema: pa.Schema) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}


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
        except (pa.ArrowException, OSError) as exc:
            raise UsageError(f"corrupted Parquet file under {self.files[0].parent}: {str(exc).splitlines()[0]}") from None
        return pa.concat_tables(tables) if len(tables) > 1 else tables[0]

    def model_card(self) -> dict[str, Any]:
        try:
            return json.loads(self.metadata.get(META_MODEL_CARD, "{}"))
        except ValueError:
            return {}


def open_version(published_dir: str | Path, model_version: str | None = None, *, verify: str = "full") -> PublishedVersion:
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
        raise UsageError(f"model version {version!r} has a publish record but no table folder {folder}; publish it again")
    files = sorted(folder.glob("*.parquet"))
    if not files:
        raise UsageError(f"{folder} holds no Parquet file")
    dims, vocabs, keys = set(), set(), set()
    meta: dict[str, str] = {}
    for path in files:
        try:
            schema = pq.read_schema(path)
        except (pa.ArrowException, OSError) as exc:
            raise UsageError(f"corrupted Parquet file {path}: {str(exc).splitlines()[0]}") from None
        meta = meta or _schema_meta(schema)
        m = _schema_meta(schema)
        dims.add(_file_dim(schema))
        vocabs.add(m.get(META_FINDINGS))
        keys.add(m.get(META_KEY_ID))
    if len(dims) > 1 or None in dims:
        raise UsageError(f"{folder} mixes embedding sizes D={sorted(str(d) for d in dims)}: one version must have one D")
    if len(vocabs) > 1:
        raise UsageError(f"{folder} mixes vocabularies ({len(vocabs)} different finding lists): republish the version")
    if len(keys) > 1:
        raise UsageError(f"{folder} mixes pseudonymisation keys {sorted(str(k) for k in keys)}")
    record = read_record(published_dir, version)
    parts = record.get("parts") or []
    by_name = {p["file"]: p for p in parts}
    names = [p.name for p in files]
    if sorted(by_name) != names:
        extra = sorted(set(names) - set(by_name))
        missing = sorted(set(by_name) - set(names))
        raise UsageError(f"{folder} does not match its publish record: unexpected {extra}, missing {missing}; publish again")
    dim = dims.pop()
    if int(record.get("embedding_dim", -1)) != dim:
        raise UsageError(f"publish record says D={record.get('embedding_dim')} but the table has D={dim}")
    for path in files:
        entry = by_name[path.name]
        if path.stat().st_size != entry["bytes"]:
            raise UsageError(f"{path} does not match its publish record (size {path.stat().st_size} != {entry['bytes']}); "
                             "the file changed after publication: publish again")
        if verify == "full" and sha256_file(path) != entry["sha256"]:
            raise UsageError(f"{path} does not match its publish record (checksum); the file changed after publication: "
                             "publish again")
    findings = json.loads(vocabs.pop() or "[]")
    return PublishedVersion(published_dir, version, record, files, dim, findings, keys.pop() or "", meta)


def label_matrix(positive_findings: Sequence[Sequence[str] | None], findings: Sequence[str]) -> np.ndarray:
    """Multi-hot bool matrix from positive_findings lists (a null list gives an all-False row)."""
    index = {f: j for j, f in enumerate(findings)}
    out = np.zeros((len(positive_findings), len(findings)), dtype=bool)
    for i, pos in enumerate(positive_findings):
        for f in pos or ():
            j = index.get(f)
            if j is not None:
                out[i, j] = True
    return out


def embedding_matrix(table: pa.Table, column: str = "embedding") -> np.ndarray:
    """[N, D] float32 view of a fixed_size_list column (zero-copy when the column has one chunk)."""
    col = table.column(column).combine_chunks()
    dim = col.type.list_size
    values = col.flatten().to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=np.float32).reshape(-1, dim)
