"""The published embeddings store: layout, atomic publication, the versions table, verified reads, retention.

pyarrow and numpy only (no torch): evaluation and `similar` read through this package, and the
model's publish step writes through it. See `layout` for the folder structure and why.
"""
from .current import set_current
from .layout import (
    EMBEDDINGS_DIR,
    INDEX_DIR,
    INDEX_KINDS,
    MANIFESTS_DIR,
    META_D,
    META_FINDINGS,
    META_KEY_ID,
    META_MODEL_CARD,
    META_MODEL_VERSION,
    PART_NAME,
    RECORD_FORMAT,
    ROW_GROUP_SIZE,
    ROWS_PER_FILE,
    STAGING_DIR,
    VERSIONS_FILE,
    check_version_name,
    default_index_dir,
    index_cache_paths,
    publish_lock,
    record_path,
    staging_dir,
    version_dir,
    version_folders,
    versions_path,
)
from .prune import PruneResult, finish_interrupted_prune, plan_prune, prune_versions
from .read import (
    PublishedVersion,
    current_entry,
    current_version,
    open_version,
    published_versions,
    read_record,
    read_versions,
    resolve_version,
)
from .table import embedding_matrix, embeddings_table, label_matrix, table_metadata_for
from .versions import write_versions
from .write import PublishResult, clean_staging, publish_table, record_checksum, write_parts

__all__ = [
    "EMBEDDINGS_DIR", "INDEX_DIR", "INDEX_KINDS", "MANIFESTS_DIR", "META_D", "META_FINDINGS", "META_KEY_ID",
    "META_MODEL_CARD", "META_MODEL_VERSION", "PART_NAME", "RECORD_FORMAT", "ROW_GROUP_SIZE", "ROWS_PER_FILE",
    "STAGING_DIR", "VERSIONS_FILE", "check_version_name", "default_index_dir", "index_cache_paths", "publish_lock",
    "record_path", "staging_dir", "version_dir", "version_folders", "versions_path", "PruneResult",
    "finish_interrupted_prune", "plan_prune", "prune_versions", "PublishedVersion", "open_version",
    "published_versions", "read_record", "resolve_version", "embedding_matrix",
    "embeddings_table", "label_matrix", "table_metadata_for", "current_entry", "current_version", "read_versions",
    "set_current", "write_versions", "PublishResult", "clean_staging", "publish_table", "record_checksum",
    "write_parts",
]
