"""Inbox, warehouse, shards and published tables on fsspec URIs (DESIGN §11, §12).

radsim's stages work on local folders: atomic renames, pyarrow, tar, torch. For a URI such as
`s3://bucket/radsim`, `gs://…` or `memory://wh`, a run works in a local mirror of it:

1. **pull**: the remote tree is mirrored into a cache folder. Only files whose remote
   fingerprint (size, ETag or mtime, as fsspec reports them) changed since the last pull are
   fetched, and local files the remote lacks are removed, so the partial work of a run that
   crashed before its push is dropped and redone, never published.
2. The stages run on the mirror exactly as on a local warehouse (ledger, resume, quarantine).
3. **push**, only after the run succeeded: new and changed data files are uploaded first,
   then the files that point at them (`manifest.parquet`, `current.json`, `_manifests/`),
   then `ledger.parquet`, which says what is done; then the files the run removed are
   deleted remotely. Those deletes are recorded first, so a push cut short during them is
   finished by the next run before it pulls.

The mirror holds restricted data (inbox images and reports, `restricted/`): its folders are
owner-only (0700), and deleting `$RADSIM_CACHE/mirrors/<…>` drops it
(the next run pulls everything again).

Where atomicity differs from a local disk (DESIGN §12): object stores have no rename, so a
folder cannot be swapped in one step. A reader that lists a published version *during* a
push may see the new part files next to the old ones until the old ones are deleted; a
reader that goes through the version's `_manifests/` record, or reads after the run ends,
sees one version. A push cut short (crash, lost network) leaves uploaded files that the
remote ledger does not count yet (it is uploaded last), so the next run pulls that state and
redoes the work from the ledger: stages are incremental (shards already in the manifest are
skipped) and its push overwrites or deletes the leftovers. Two runs must not push to the same
warehouse at once: the lock in `open_folder` guards one machine, a Prefect concurrency limit
the deployments.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radsim.data_contracts import RadsimError, UsageError
from radsim.data_contracts.atomic import exclusive_lock, write_json_atomic
from radsim.warehouse.layout import CURRENT_FILE, LEDGER_FILE, MANIFEST_FILE, VERSIONS_FILE

SNAPSHOT_FILE = ".radsim-mirror.json"
PENDING_FILE = ".radsim-mirror-deletes.json"
LOCK_FILE = ".radsim-mirror.lock"
RUN_LOCK_FILE = ".radsim-run.lock"
LEDGER_NAMES = (LEDGER_FILE,)
COMMIT_NAMES = (MANIFEST_FILE, CURRENT_FILE, VERSIONS_FILE)
COMMIT_DIRS = ("_manifests",)
LOCAL_PROTOCOLS = ("file", "local")


def is_remote(location: str | os.PathLike[str]) -> bool:
    """True for an fsspec URI that is not the local disk (s3://, gs://, memory://, …)."""
    text = str(location)
    return "://" in text and text.split("://", 1)[0].lower() not in LOCAL_PROTOCOLS


def local_path(location: str | os.PathLike[str]) -> Path:
    """A local path from a plain path or a file:// URI."""
    text = str(location)
    return Path(text.split("://", 1)[1]) if "://" in text else Path(text)


def filesystem(uri: str) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it); a missing backend package or protocol is one line."""
    import fsspec
    from fsspec.registry import known_implementations

    protocol = uri.split("://", 1)[0].lower()
    try:
        return fsspec.core.url_to_fs(uri)
    except ImportError as exc:
        hint = known_implementations.get(protocol, {}).get("err") or str(exc)
        package = known_implementations.get(protocol, {}).get("class", "").split(".")[0]
        install = f"pip install {package}" if package else "install its fsspec backend"
        raise UsageError(f"{uri}: the fsspec backend for {protocol}:// is not installed ({hint}); "
                         f"{install}, or use a local path") from None
    except ValueError as exc:
        if "Protocol not known" in str(exc):
            raise UsageError(f"{uri}: unknown storage protocol {protocol}:// (fsspec knows "
                             f"{', '.join(sorted(p for p in known_implementations if len(p) > 2)[:12])}, …)") from None
        raise


def default_cache_root() -> Path:
    """$RADSIM_CACHE/mirrors, else $XDG_CACHE_HOME (or ~/.cache)/radsim/mirrors: needs room for the working set."""
    if os.environ.get("RADSIM_CACHE"):
        return Path(os.environ["RADSIM_CACHE"]) / "mirrors"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "radsim" / "mirrors"


@dataclass
class Mirror:
    """A local working copy of the remote folder `uri` (see the module docstring)."""

    uri: str
    local: Path
    on_progress: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        self.fs, self.root = filesystem(self.uri)
        self.root = self.root.rstrip("/")

    # ------------------------------------------------------------------ state
    def _remote_files(self) -> dict[str, dict[str, Any]]:
        """{relative path: listing entry} of every remote file; one listing, the source of every fingerprint."""
        self.fs.invalidate_cache()
        if not self.fs.exists(self.root):
            return {}
        prefix = self.root + "/"
        out = {}
        for name, info in self.fs.find(self.root, detail=True).items():
            if info.get("type") == "directory":
                continue
            if not name.startswith(prefix):
                raise RadsimError(f"{self.uri}: the listing returned {name}, outside {self.root}")
            out[name[len(prefix):]] = info
        return out

    def _local_files(self) -> dict[str, list[int]]:
        out = {}
        for path in self.local.rglob("*"):
            if path.is_file() and not _machine_local(path.name):
                st = path.stat()
                out[path.relative_to(self.local).as_posix()] = [st.st_size, st.st_mtime_ns]
        return out

    def _read_json(self, name: str) -> Any:
        try:
            return json.loads((self.local / name).read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None

    def _write_json(self, name: str, doc: Any) -> None:
        write_json_atomic(self.local / name, doc)

    def _remote(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def _say(self, line: str) -> None:
        if self.on_progress:
            self.on_progress(line)

    # ------------------------------------------------------------------ sync
    def finish_deletes(self) -> int:
        """Deletes a push recorded but did not finish (it was cut short after its commit files were up)."""
        pending = self._read_json(PENDING_FILE) or []
        for rel in pending:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(self._remote(rel))
        with contextlib.suppress(FileNotFoundError):
            (self.local / PENDING_FILE).unlink()
        return len(pending)

    def pull(self) -> dict[str, int]:
        """Make the local folder equal to the remote one; fetch only what changed since the last sync."""
        self.local.mkdir(mode=0o700, parents=True, exist_ok=True)
        finished = self.finish_deletes()
        remote, local, snap = self._remote_files(), self._local_files(), self._read_json(SNAPSHOT_FILE) or {}
        removed = 0
        for rel in sorted(set(local) - set(remote)):
            (self.local / rel).unlink()
            removed += 1
        marks = {rel: fingerprint(info) for rel, info in remote.items()}
        stale = sorted(
            rel
            for rel, mark in marks.items()
            if (snap.get(rel) or {}).get("remote") != mark or local.get(rel) != (snap.get(rel) or {}).get("local")
        )
        for parent in {(self.local / rel).parent for rel in stale}:
            parent.mkdir(parents=True, exist_ok=True)
        if stale:  # one batched call: async backends (s3fs, gcsfs) fetch concurrently
            self.fs.get([self._remote(rel) for rel in stale], [str(self.local / rel) for rel in stale])
        fetched, new_snap = len(stale), {}
        for rel, mark in sorted(marks.items()):
            st = (self.local / rel).stat()
            new_snap[rel] = {"remote": mark, "local": [st.st_size, st.st_mtime_ns]}
        _prune_empty_dirs(self.local)
        self._write_json(SNAPSHOT_FILE, new_snap)
        self._say(f"{self.uri}: {len(remote)} files mirrored ({fetched} fetched, {removed} stale local removed"
                  + (f", {finished} unfinished remote deletes done" if finished else "") + ")")
        return {"files": len(remote), "fetched": fetched, "removed": removed, "finished_deletes": finished}

    def push(self) -> dict[str, int]:
        """Upload new and changed files, data first and the ledger last; then delete what the run removed.

        What to delete is the remote listing minus the local files (the mirror equalled the remote
        after the pull), so a lost snapshot costs re-uploads, never a forgotten delete.
        """
        remote, local, snap = self._remote_files(), self._local_files(), self._read_json(SNAPSHOT_FILE) or {}
        changed = sorted((rel for rel, stamp in local.items()
                          if rel not in remote or (snap.get(rel) or {}).get("local") != stamp),
                         key=lambda rel: (commit_tier(rel), rel))
        deleted = sorted(set(remote) - set(local))
        for parent in sorted({self._remote(rel).rsplit("/", 1)[0] for rel in changed}):
            self.fs.makedirs(parent, exist_ok=True)  # a no-op on object stores; sftp, hdfs need it
        for tier in (0, 1, 2):  # one batched call per tier: async backends upload concurrently
            batch = [rel for rel in changed if commit_tier(rel) == tier]
            if batch:
                self.fs.put([str(self.local / rel) for rel in batch], [self._remote(rel) for rel in batch])
        for rel in changed:
            snap[rel] = {"remote": None, "local": local[rel]}  # fingerprinted from the listing below
        self._write_json(PENDING_FILE, deleted)  # the commit files are up: these deletes must happen
        for rel in deleted:
            snap.pop(rel, None)
        self.finish_deletes()
        listing = self._remote_files()
        for rel in changed:
            if rel in listing:
                snap[rel]["remote"] = fingerprint(listing[rel])
        self._write_json(SNAPSHOT_FILE, snap)
        self._say(f"{self.uri}: pushed {len(changed)} files, deleted {len(deleted)}")
        return {"uploaded": len(changed), "deleted": len(deleted)}


def _machine_local(name: str) -> bool:
    """The mirror's own files and advisory locks (meaningful on one machine only) are never pushed."""
    own = (SNAPSHOT_FILE, PENDING_FILE, LOCK_FILE)
    return name in own or name.endswith(".tmp") and name[:-4] in own or name.endswith(".lock")


def commit_tier(rel: str) -> int:
    """Upload order: 0 data, 1 files that point at data (manifests, current.json), 2 the ledger.

    The ledger says what is done, so it goes last: a push cut short never leaves a ledger
    that marks exams sharded or published while the manifests it relies on are still old.
    """
    parts = rel.split("/")
    if parts[-1] in LEDGER_NAMES:
        return 2
    return 1 if parts[-1] in COMMIT_NAMES or any(p in COMMIT_DIRS for p in parts[:-1]) else 0


def fingerprint(info: dict[str, Any]) -> str:
    """What tells that a remote file changed: its listing entry (size, ETag/mtime/created, …)."""
    keep = {k: v for k, v in info.items() if k not in ("name", "Key", "type")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _prune_empty_dirs(root: Path) -> None:
    for path in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            path.rmdir()


def mirror_dir(uri: str, cache_root: str | Path | None = None) -> Path:
    digest = hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:16]
    name = "".join(c if c.isalnum() else "-" for c in uri.split("://", 1)[-1].rstrip("/"))[-40:]
    return Path(cache_root or default_cache_root()) / f"{digest}-{name}"


@contextlib.contextmanager
def open_folder(location: str | os.PathLike[str], *, writeback: bool = True, must_exist: bool = False,
                cache_root: str | Path | None = None,
                on_progress: Callable[[str], None] | None = None) -> Iterator[Path]:
    """A local folder for `location`: the path itself, or a mirror of a remote URI.

    With `writeback` the folder is one run's at a time (a second run fails fast with one line,
    instead of interleaving with the first), and a mirror is pushed back when the block ends
    without an exception. Reading (an inbox) takes no lock on a local folder.
    """
    if not is_remote(location):
        path = local_path(location)
        if must_exist and not path.exists():
            raise UsageError(f"{location} does not exist")
        if not writeback:
            yield path
            return
        path.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(path / RUN_LOCK_FILE, f"another radsim run is writing to {location}"):
            yield path
        return
    uri = str(location)
    mirror = Mirror(uri, mirror_dir(uri, cache_root), on_progress)
    if must_exist and not mirror.fs.exists(mirror.root):
        raise UsageError(f"{uri} does not exist")
    if mirror.fs.isfile(mirror.root):
        raise UsageError(f"{uri} is a file: a remote location must be a folder (a manifest inbox must be local)")
    for folder in (mirror.local.parent, mirror.local):  # restricted data (inbox, restricted/): owner only
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
    with exclusive_lock(mirror.local / LOCK_FILE, f"{uri}: another radsim run on this machine is using its mirror "
                                              f"{mirror.local}"):
        mirror.pull()
        yield mirror.local
        if writeback:
            mirror.push()


def require_local(key: str, location: str | None) -> None:
    """Settings that must stay local files (the validated subset, a vocabulary) say so in one line."""
    if location and is_remote(location):
        raise UsageError(f"{key} {location}: fsspec URIs are supported for the inbox and the warehouse; "
                         f"copy this file to a local path")
