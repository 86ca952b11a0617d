"""Similar-exam search over a published version with FAISS (DESIGN §4 `radsim similar`).

Vectors are unit length, so inner product = cosine similarity; the reported distance is
the cosine distance 1 - similarity (0 for the query itself). Exact search (IndexFlatIP)
is the default; IVF or HNSW trade a little recall for speed on large tables.

The index is cached in `index/` beside PUBLISHED_DIR (outside the table: a foreign file
there breaks `read_parquet(dir)`), with the publish record's checksum beside it. A new
publication of the version changes the checksum, and the next open rebuilds the index.
"""
from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from radsim.data_contracts import UsageError
from radsim.data_contracts.atomic import atomic_output, write_json_atomic
from radsim.imaging.reader import FRONTAL
from radsim.warehouse.published import INDEX_KINDS, PublishedVersion, default_index_dir, embedding_matrix, open_version

DEFAULT_KIND = "flat"  # exact search; "ivf" and "hnsw" trade recall for speed
DEFAULT_NEIGHBOURS = 10  # exams a query returns
META_COLUMNS = ["exam_key", "image_index", "split", "view_position", "positive_findings", "no_finding"]


@dataclass(frozen=True)
class Neighbour:
    rank: int
    exam_key: str
    image_index: int
    distance: float
    similarity: float
    split: str
    view_position: str | None
    positive_findings: list[str] | None  # None: unlabelled

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _faiss():
    try:
        import faiss
    except ImportError:  # pragma: no cover - faiss-cpu is in the evaluation extra
        raise UsageError("radsim similar needs faiss: pip install 'radsim[evaluation]' (faiss-cpu)") from None
    # Batches of 20+ queries go through one BLAS matrix product (FAISS's classic threshold;
    # faiss-cpu 1.15 ships a much higher one, which keeps batched search on the per-query path).
    faiss.cvar.distance_compute_blas_threshold = 20
    return faiss


def build_index(vectors: np.ndarray, kind: str = DEFAULT_KIND, *, nlist: int | None = None, hnsw_m: int = 32,
                seed: int = 0) -> Any:
    """A FAISS inner-product index over unit vectors: exact (flat), IVF-flat or HNSW-flat."""
    faiss = _faiss()
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = x.shape
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "ivf":
        nlist = nlist or max(1, min(int(4 * np.sqrt(max(n, 1))), max(1, n // 39)))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        sample = x[rng.choice(n, size=min(n, 256 * nlist), replace=False)] if n else x
        index.train(sample)
        index.nprobe = min(nlist, 16)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = 128
    else:
        raise UsageError(f"unknown index kind {kind!r}: use one of {', '.join(INDEX_KINDS)}")
    index.add(x)
    if kind == "ivf":
        index.make_direct_map()  # reconstruct(row): the query vector of a published exam
    return index


def normalise_rows(x: np.ndarray) -> np.ndarray:
    x = np.atleast_2d(np.asarray(x, dtype=np.float32))
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class SimilarIndex:
    """k nearest exams of a published version: `SimilarIndex.open(published_dir).query(exam_key=...)`."""

    def __init__(self, version: PublishedVersion, index: Any, meta: pa.Table, kind: str, rebuilt: bool):
        self.version = version
        self.index = index
        self.kind = kind
        self.rebuilt = rebuilt
        self._meta = meta  # arrow columns; rows are converted to Python only for the neighbours returned
        self._keys = meta.column("exam_key").combine_chunks()

    def _value(self, column: str, row: int) -> Any:
        return self._meta.column(column)[int(row)].as_py()

    @property
    def exam_keys(self) -> list[str]:
        return self._keys.to_pylist()

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, published_dir: str | Path, model_version: str | None = None, *, kind: str = DEFAULT_KIND,
             index_dir: str | Path | None = None, cache: bool = True) -> SimilarIndex:
        """Open (or build and cache) a version's index: the current one unless given (else the one published last)."""
        if kind not in INDEX_KINDS:
            raise UsageError(f"unknown index kind {kind!r}: use one of {', '.join(INDEX_KINDS)}")
        quick = open_version(published_dir, model_version, verify="quick")
        folder = Path(index_dir) if index_dir is not None else default_index_dir(published_dir)
        ipath = folder / f"{quick.model_version}.{kind}.faiss"
        jpath = folder / f"{quick.model_version}.{kind}.json"
        index = cls._cached(ipath, jpath, quick) if cache else None
        version, rebuilt = quick, False
        if index is None:
            version = open_version(published_dir, quick.model_version, verify="full")  # re-hash before trusting
            table = version.read(["embedding"])
            index = build_index(normalise_rows(embedding_matrix(table)) if table.num_rows else
                                np.empty((0, version.embedding_dim), np.float32), kind)
            rebuilt = True
            if cache:
                cls._store(index, ipath, jpath, version, kind)
        meta = version.read(META_COLUMNS)
        if index.ntotal != meta.num_rows:
            raise UsageError(f"index {ipath} holds {index.ntotal} vectors but the table {meta.num_rows}; "
                             "delete the index to rebuild it")
        return cls(version, index, meta, kind, rebuilt)

    @staticmethod
    def _cached(ipath: Path, jpath: Path, version: PublishedVersion) -> Any:
        if not (ipath.exists() and jpath.exists()):
            return None
        try:
            doc = json.loads(jpath.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if doc.get("record_checksum") != version.checksum or doc.get("rows") != version.record.get("rows"):
            return None  # republished since: rebuild
        try:
            return _faiss().read_index(str(ipath))
        except RuntimeError:
            return None

    @staticmethod
    def _store(index: Any, ipath: Path, jpath: Path, version: PublishedVersion, kind: str) -> None:
        faiss = _faiss()
        try:
            with atomic_output(ipath) as tmp:
                faiss.write_index(index, str(tmp))
            write_json_atomic(jpath, {"model_version": version.model_version, "record_checksum": version.checksum,
                                      "rows": version.record.get("rows"), "kind": kind,
                                      "embedding_dim": version.embedding_dim})
        except (OSError, UsageError):  # atomic_output reports a folder it cannot write as a UsageError
            pass  # a read-only warehouse still answers queries, just without a cache

    # ------------------------------------------------------------------ lookups
    @property
    def model_version(self) -> str:
        return self.version.model_version

    def __len__(self) -> int:
        return self._meta.num_rows

    def _rows_of(self, exam_key: str) -> list[int]:
        return pc.indices_nonzero(pc.equal(self._keys, pa.scalar(str(exam_key), pa.string()))).to_pylist()

    def has_exam(self, exam_key: str) -> bool:
        return bool(self._rows_of(exam_key))

    def exam_row(self, exam_key: str) -> int:
        """The row that represents an exam: its first frontal image, else its first image."""
        rows = self._rows_of(exam_key)
        if not rows:
            close = []
            if len(exam_key) >= 6:
                hits = pc.starts_with(self._keys, pattern=exam_key[:6])
                close = self._keys.filter(hits).slice(0, 5).to_pylist()
            hint = f"; keys with the same prefix: {', '.join(close)}" if close else ""
            raise UsageError(f"exam key {exam_key!r} is not in model version {self.model_version}{hint}")
        frontal = [r for r in rows if self._value("view_position", r) in FRONTAL]
        return min(frontal or rows, key=lambda r: self._value("image_index", r))

    def vector(self, row: int) -> np.ndarray:
        try:
            return np.asarray(self.index.reconstruct(int(row)), dtype=np.float32)
        except RuntimeError:  # an IVF index read from disk may lack its direct map
            _faiss().extract_index_ivf(self.index).make_direct_map()
            return np.asarray(self.index.reconstruct(int(row)), dtype=np.float32)

    # ------------------------------------------------------------------ queries
    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw FAISS search: (similarities [q, k], rows [q, k]) for a batch of query vectors."""
        return self.index.search(np.ascontiguousarray(normalise_rows(vectors)), int(k))

    def query(self, *, exam_key: str | None = None, vector: np.ndarray | None = None, k: int = DEFAULT_NEIGHBOURS,
              exclude_self: bool = False, views: Sequence[str] | None = None) -> list[Neighbour]:
        """The k nearest exams (one row per exam, its closest image), best first.

        Give an `exam_key` (a published exam; it comes back first at distance ~0 unless
        `exclude_self`) or a `vector` (e.g. a new radiograph embedded by radsim.model.query).
        """
        if k < 1:
            raise UsageError(f"--k must be at least 1, got {k}")
        if (exam_key is None) == (vector is None):
            raise UsageError("give exactly one of an exam key or a query vector")
        if exam_key is not None:
            vec = self.vector(self.exam_row(exam_key))
        else:
            vec = np.asarray(vector, dtype=np.float32).ravel()
            if vec.shape[0] != self.version.embedding_dim:
                raise UsageError(f"query vector has D={vec.shape[0]} but model version {self.model_version} has "
                                 f"D={self.version.embedding_dim}")
        n = len(self)
        fetch = min(n, max(4 * (k + 1), 32))
        while True:
            sims, rows = self.search(vec[None, :], fetch)
            out: list[Neighbour] = []
            seen: set[str] = set()
            for s, r in zip(sims[0], rows[0]):
                if r < 0:
                    continue
                key = self._keys[int(r)].as_py()
                if key in seen or (exclude_self and key == exam_key):
                    continue
                view = self._value("view_position", r)
                if views is not None and view not in views:
                    continue
                seen.add(key)
                sim = float(np.clip(s, -1.0, 1.0))
                out.append(Neighbour(len(out) + 1, key, int(self._value("image_index", r)), max(0.0, 1.0 - sim), sim,
                                     self._value("split", r), view, self._value("positive_findings", r)))
                if len(out) == k:
                    return out
            if fetch >= n:
                return out
            fetch = min(n, fetch * 4)


def suggest_ids(exam_id: str, known_ids: Sequence[str], n: int = 5) -> list[str]:
    """Close raw ids (difflib) among those a restricted id map lists."""
    return difflib.get_close_matches(str(exam_id), [str(i) for i in known_ids], n=n, cutoff=0.6)


def format_neighbours(neighbours: Sequence[Neighbour], model_version: str, query_label: str,
                      raw_ids: dict[str, str] | None = None) -> str:
    """A plain-text table for the terminal; with `raw_ids` (exam_key → exam_id) a raw id column, marked restricted."""
    lines = [f"{len(neighbours)} nearest exams to {query_label} (model version {model_version}; distance = 1 - cosine)",
             f"{'rank':>4}  {'exam_key':<32}  {'img':>3}  {'distance':>8}  {'split':<5}  {'view':<7}  findings"]
    if raw_ids is not None:
        lines[0] = "RESTRICTED: raw exam ids from the id map, for in-site use only\n" + lines[0]
        lines[-1] = lines[-1].replace("  findings", f"  {'exam_id (restricted)':<20}  findings")
    for nb in neighbours:
        findings = "unlabelled" if nb.positive_findings is None else (", ".join(nb.positive_findings) or "-")
        raw = "" if raw_ids is None else f"{raw_ids.get(nb.exam_key, '(not in the id map)'):<20}  "
        lines.append(f"{nb.rank:>4}  {nb.exam_key:<32}  {nb.image_index:>3}  {nb.distance:8.4f}  {nb.split:<5}  "
                     f"{(nb.view_position or '-'):<7}  {raw}{findings}")
    return "\n".join(lines)
