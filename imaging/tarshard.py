"""Deterministic WebDataset tar files, written without importing webdataset (which pulls torch).

Same samples in → same bytes out: USTAR headers with fixed mtime, uid/gid, names and mode,
members in sorted extension order. The file is written under a temporary name and renamed
into place only when complete, so a crash never leaves a half-written shard under its
final name.
"""
from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

FIXED_MTIME = 0
OWNER = "radsim"
BLOCK = tarfile.BLOCKSIZE


def member_size(nbytes: int) -> int:
    """Bytes one member takes in a tar: a header block plus data padded to 512."""
    return BLOCK + ((nbytes + BLOCK - 1) // BLOCK) * BLOCK


class ShardTarWriter:
    """Write samples ({"__key__": str, ext: bytes, ...}) to `final_path` via a temp file."""

    def __init__(self, final_path: str | Path):
        self.final_path = Path(final_path)
        self.tmp_path = self.final_path.with_name(f".{self.final_path.name}.tmp")
        self._fh = open(self.tmp_path, "wb")
        self._tar = tarfile.open(fileobj=self._fh, mode="w", format=tarfile.USTAR_FORMAT)
        self.count = 0
        self.size = 2 * BLOCK  # the end-of-archive marker

    def sample_size(self, sample: dict[str, bytes | str]) -> int:
        return sum(member_size(len(v)) for k, v in sample.items() if k != "__key__")

    def projected_size(self, sample: dict[str, bytes | str]) -> int:
        """File size after adding `sample` (tar pads the archive to 10 KiB records)."""
        raw = self.size + self.sample_size(sample)
        return -(-raw // tarfile.RECORDSIZE) * tarfile.RECORDSIZE

    def write(self, sample: dict[str, bytes | str]) -> None:
        key = sample["__key__"]
        if not isinstance(key, str) or "." in key or "/" in key:
            raise ValueError(f"bad sample key {key!r}: WebDataset keys may not contain '.' or '/'")
        for ext in sorted(k for k in sample if k != "__key__"):
            data = sample[ext]
            if not isinstance(data, (bytes, bytearray)):
                raise TypeError(f"member {key}.{ext} must be bytes")
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size = len(data)
            info.mtime = FIXED_MTIME
            info.mode = 0o444
            info.uid = info.gid = 0
            info.uname = info.gname = OWNER
            self._tar.addfile(info, io.BytesIO(bytes(data)))
            self.size += member_size(len(data))
        self.count += 1

    def commit(self) -> Path:
        """Finish the archive, flush it to disk and rename it to its final name."""
        self._tar.close()
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self.tmp_path, self.final_path)
        return self.final_path

    def abort(self) -> None:
        try:
            self._tar.close()
            self._fh.close()
        finally:
            if self.tmp_path.exists():
                self.tmp_path.unlink()


def iter_tar_samples(path: str | Path) -> Iterator[dict[str, bytes | str]]:
    """Samples of a shard in stored order: {"__key__": key, ext: bytes}. Key = name up to the first dot."""
    current: dict[str, bytes | str] | None = None
    with tarfile.open(path, mode="r:") as tar:
        for info in tar:
            if not info.isfile():
                continue
            key, _, ext = info.name.partition(".")
            if current is None or current["__key__"] != key:
                if current is not None:
                    yield current
                current = {"__key__": key}
            fh = tar.extractfile(info)
            current[ext] = fh.read() if fh is not None else b""
    if current is not None:
        yield current
