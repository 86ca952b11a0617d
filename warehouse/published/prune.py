"""Retention: `radsim prune --keep N` removes old published versions, never the current one.

A prune is one journaled step under the publish lock, so a crash (even SIGKILL) at any point is
finished by the next publish, promotion or prune, and the table is never left half-pruned:

1. the versions to remove are written to a journal in the staging folder;
2. versions.parquet is rewritten without them, so nobody is pointed at a version about to go;
3. each version's folder and publish record move out into the staging folder (one rename each),
   with its similar-exam index caches;
4. what moved out is deleted, then the journal.

Readers: a read of one version that is kept (the current one, say) is never touched. A reader
still reading a removed version's files keeps the files it opened (POSIX unlink semantics); one
that opens a removed file afterwards gets a clear "was pruned" error from radsim's readers.
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radsim.data_contracts import UsageError
from radsim.data_contracts.atomic import write_json_atomic

from .layout import (
    JOURNAL_FILE,
    clean_staging,
    default_index_dir,
    index_cache_paths,
    migrate_legacy_layout,
    publish_lock,
    record_path,
    staging_dir,
    version_dir,
    version_folders,
)
from .read import current_version, published_versions
from .versions import write_versions

TRASH_DIR = "pruned"


@dataclass
class PruneResult:
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    current: str | None = None
    resumed: list[str] = field(default_factory=list)  # finished for an interrupted prune

    def summary(self) -> str:
        text = (f"prune: removed {len(self.removed)} version(s) ({', '.join(self.removed) or 'none'}), kept "
                f"{len(self.kept)} ({', '.join(self.kept) or 'none'}); current: {self.current or 'none'}")
        return text + (f"; finished an interrupted prune of {', '.join(self.resumed)}" if self.resumed else "")


def plan_prune(published_dir: str | Path, keep: int | None,
               named: Sequence[str] = ()) -> tuple[list[str], list[str], str | None]:
    """(remove, keep, current): the `keep` versions first published last stay, or all but `named`.

    The current version always stays; naming it is refused.
    """
    if keep is None and not named:
        raise UsageError("say what to prune: --keep N, or --remove VERSION")
    if keep is not None and keep < 1:
        raise UsageError(f"--keep must be at least 1 (got {keep}): the current version is never removed")
    order = [r["model_version"] for r in published_versions(published_dir)]
    order += [v for v in version_folders(published_dir) if v not in order]  # a folder without a record: oldest
    current = current_version(published_dir)
    unknown = sorted(set(named) - set(order))
    if unknown:
        raise UsageError(f"not published in {published_dir}: {', '.join(unknown)}")
    if current is not None and current in named:
        raise UsageError(f"refused: {current} is the current version; make another version current first "
                         "(a promotion, or radsim publish), then prune it")
    newest = order[-keep:] if keep is not None else order
    kept = [v for v in order if (v in newest and v not in named) or v == current]
    return [v for v in order if v not in kept], kept, current


def prune_versions(published_dir: str | Path, keep: int | None = None, *, remove: Sequence[str] = (),
                   index_dir: str | Path | None = None, dry_run: bool = False) -> PruneResult:
    """Remove all but the `keep` newest published versions, or the `remove`d ones, never the current one; atomic."""
    published_dir = Path(published_dir)
    if not published_dir.is_dir():
        raise UsageError(f"{published_dir} is not a published folder")
    with publish_lock(published_dir):
        resumed = finish_interrupted_prune(published_dir)
        migrate_legacy_layout(published_dir)
        remove, kept, current = plan_prune(published_dir, keep, remove)
        if remove and not dry_run:
            index = Path(index_dir) if index_dir is not None else default_index_dir(published_dir)
            write_json_atomic(staging_dir(published_dir) / JOURNAL_FILE,
                              {"remove": remove, "index_dir": str(index.resolve())})
            _finish(published_dir)
    return PruneResult(remove, kept, current, resumed)


def finish_interrupted_prune(published_dir: str | Path) -> list[str]:
    """Roll an interrupted prune forward (the caller holds the publish lock); the versions it removed."""
    journal = staging_dir(published_dir) / JOURNAL_FILE
    if not journal.exists():
        return []
    return _finish(Path(published_dir))


def _finish(published_dir: Path) -> list[str]:
    """Steps 2-4 of a prune; each is idempotent, so running them again after a crash is safe."""
    stage = staging_dir(published_dir)
    journal = stage / JOURNAL_FILE
    try:
        doc: dict[str, Any] = json.loads(journal.read_text(encoding="utf-8"))
        remove = [str(v) for v in doc["remove"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(
            f"the prune journal {journal} is unreadable ({exc}); remove it by hand and prune again"
        ) from None
    current = current_version(published_dir)
    if current in remove:  # the journal predates a promotion: never remove the current version
        remove.remove(current)
    trash = stage / TRASH_DIR
    trash.mkdir(parents=True, exist_ok=True)
    write_versions(published_dir, exclude=remove)
    for v in remove:
        for src in (version_dir(published_dir, v), record_path(published_dir, v),
                    *index_cache_paths(doc.get("index_dir") or default_index_dir(published_dir), v)):
            if src.exists():
                os.replace(src, trash / f"{v}.{src.parent.name}.{src.name}")
    shutil.rmtree(trash, ignore_errors=True)
    journal.unlink(missing_ok=True)
    clean_staging(published_dir)  # a temporary file a kill left behind
    return remove
