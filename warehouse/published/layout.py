"""Where a published table lives on disk, and why it is laid out so (DESIGN §4, §12).

    PUBLISHED_DIR/
      embeddings/<model_version>/part-*.parquet   every published version; the only Parquet files under embeddings/
      versions.parquet                             one row per version: publish time, rows, D, which one is current
      _manifests/<model_version>.json              publish record: rows, sha256 of each part, contract, D, ...
    beside PUBLISHED_DIR (same filesystem, so a rename moves a folder in one step):
      .radsim-staging/<published name>/            transient: a version being written, a prune under way, the lock
      index/                                       the similar-exam FAISS caches (radsim.evaluation.similar)

Why the version folders are named `<model_version>` and not `model_version=<v>`: every file
holds `model_version` as a string column (the contract's type), and pyarrow, pandas, polars and
DuckDB turn `key=value` folder names into a second, dictionary-typed column of the same name,
which then fails to merge with the file's own ("Field model_version has incompatible types").
Plain folder names give every reader the contract's columns and types with no options. Folders
an earlier release named `model_version=<v>` are renamed on the next publish or prune.

Why stage outside PUBLISHED_DIR: polars and DuckDB read files whose names start with `.` or
`_` too, so a half-written part file anywhere under a folder an analyst globs would be read.
"""
from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from radsim.data_contracts import UsageError
from radsim.data_contracts.atomic import exclusive_lock
from radsim.data_contracts.ids import META_KEY_ID as _META_KEY_ID
from radsim.warehouse.layout import VERSIONS_FILE as _VERSIONS_FILE

EMBEDDINGS_DIR = "embeddings"
MANIFESTS_DIR = "_manifests"
VERSIONS_FILE = _VERSIONS_FILE
VERSIONS_CONTRACT = "published_versions"  # data_contracts/published_versions.yaml
STAGING_DIR = ".radsim-staging"
INDEX_DIR = "index"
LOCK_FILE = "publish.lock"  # in staging: one writer (publish, promotion, prune) at a time
JOURNAL_FILE = "prune.json"  # in staging: a prune under way, finished by the next writer
LEGACY_PREFIX = "model_version="  # folder names of earlier releases
PART_NAME = "part-{:05d}-{}.parquet"  # index, publish id: a path never names two different files
ROW_GROUP_SIZE = 65_536
ROWS_PER_FILE = 4_000_000
RECORD_FORMAT = "radsim-publish-record/1"

META_KEY_ID = _META_KEY_ID
META_MODEL_VERSION = "radsim.model_version"
META_MODEL_CARD = "radsim.model_card"
META_D = "radsim.param.D"
META_FINDINGS = "radsim.vocabulary.findings"
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


def staging_dir(published_dir: str | Path) -> Path:
    """Where versions are written before they move in: beside PUBLISHED_DIR, never under it."""
    published_dir = Path(published_dir).resolve()
    return published_dir.parent / STAGING_DIR / published_dir.name


def default_index_dir(published_dir: str | Path) -> Path:
    """The FAISS cache beside PUBLISHED_DIR (DESIGN §4 `warehouse/index/`)."""
    return Path(published_dir).resolve().parent / INDEX_DIR


def check_version_name(model_version: str) -> str:
    """A version becomes a folder and a file name: no slashes, no `=`, no leading dot."""
    if not isinstance(model_version, str) or not _VERSION_RE.match(model_version):
        raise UsageError(
            f"model version {model_version!r} cannot be published: use letters, digits, '.', '_', '+', '-'"
        )
    return model_version


def version_dir(published_dir: str | Path, model_version: str) -> Path:
    """The version's folder; one an earlier release wrote (`model_version=<v>`) until it is renamed."""
    base = Path(published_dir) / EMBEDDINGS_DIR
    current = base / model_version
    legacy = base / f"{LEGACY_PREFIX}{model_version}"
    return legacy if not current.exists() and legacy.is_dir() else current


INDEX_KINDS = ("flat", "ivf", "hnsw")  # the similar-exam index kinds cached per version


def index_cache_paths(index_dir: str | Path, model_version: str) -> list[Path]:
    """A version's cached index files (`<v>.<kind>.faiss` and its `.json`), of every kind."""
    return [Path(index_dir) / f"{model_version}.{kind}.{ext}" for kind in INDEX_KINDS for ext in ("faiss", "json")]


def record_path(published_dir: str | Path, model_version: str) -> Path:
    return Path(published_dir) / MANIFESTS_DIR / f"{model_version}.json"


def versions_path(published_dir: str | Path) -> Path:
    return Path(published_dir) / VERSIONS_FILE


def version_folders(published_dir: str | Path) -> dict[str, Path]:
    """Published version name -> its folder (either naming)."""
    base = Path(published_dir) / EMBEDDINGS_DIR
    out: dict[str, Path] = {}
    for d in sorted(base.iterdir()) if base.is_dir() else []:
        if d.is_dir() and not d.name.startswith((".", "_")):
            out[d.name.removeprefix(LEGACY_PREFIX)] = d
    return out


def migrate_legacy_layout(published_dir: str | Path) -> list[str]:
    """Rename `model_version=<v>` folders to `<v>` (one rename each; the caller holds the publish lock)."""
    import json

    from radsim.data_contracts.atomic import write_json_atomic

    renamed = []
    base = Path(published_dir) / EMBEDDINGS_DIR
    for d in sorted(base.glob(f"{LEGACY_PREFIX}*")) if base.is_dir() else []:
        name = d.name.removeprefix(LEGACY_PREFIX)
        target = base / name
        if not d.is_dir() or target.exists():
            continue
        d.rename(target)
        rec = record_path(published_dir, name)
        if rec.exists():
            doc = json.loads(rec.read_text(encoding="utf-8"))
            doc["path"] = f"{EMBEDDINGS_DIR}/{name}"
            write_json_atomic(rec, doc)
        renamed.append(name)
    return renamed


@contextlib.contextmanager
def publish_lock(published_dir: str | Path) -> Iterator[None]:
    """One writer (publish, promotion, prune) per folder at a time; the lock lives in staging, outside the table."""
    with exclusive_lock(
        staging_dir(published_dir) / LOCK_FILE, f"another publish or prune is running in {published_dir}"
    ):
        yield


def clean_staging(published_dir: str | Path) -> list[str]:
    """Remove what a crashed publish left in staging (we hold the lock, so nobody else is writing)."""
    removed = []
    for entry in staging_dir(published_dir).iterdir():
        if entry.name in (LOCK_FILE, JOURNAL_FILE):
            continue
        shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
        removed.append(entry.name)
    return removed
