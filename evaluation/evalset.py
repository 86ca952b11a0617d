"""The rows an evaluation scores: one split of a published version, its vectors, label sets and patients.

Labels are the published report-derived ones, or a validated `truth` table keyed by raw exam_id
(hashed through the site key), which replaces them. numpy and pyarrow only.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from radsim.data_contracts import IdKeyer, UsageError
from radsim.imaging.reader import FRONTAL
from radsim.warehouse.layout import MANIFEST_FILE
from radsim.warehouse.published import PublishedVersion, embedding_matrix, label_matrix

from .config import DEFAULT_CONFIG, SPLITS

VIEWS = ("PA", "AP", "LATERAL")


@dataclass
class EvalSet:
    """The labelled rows of one split of a published version, with their vectors and label sets."""

    model_version: str
    split: str
    findings: list[str]
    exam_keys: list[str]
    image_index: np.ndarray
    views: list[str | None]
    embeddings: np.ndarray  # [N, D]
    labels: np.ndarray  # [N, F] bool
    label_source: str
    n_split_rows: int
    n_unlabelled: int
    groups: list[str] | None = None  # each row's patient key (from the shard manifest), for intervals

    def __len__(self) -> int:
        return len(self.exam_keys)

    @property
    def interval_groups(self) -> list[str]:
        """What intervals resample: patients when known, else exams."""
        return self.groups if self.groups is not None else list(self.exam_keys)

    def subset(self, rows: np.ndarray) -> EvalSet:
        rows = np.asarray(rows, dtype=np.int64)
        return EvalSet(self.model_version, self.split, self.findings, [self.exam_keys[i] for i in rows],
                       self.image_index[rows], [self.views[i] for i in rows], self.embeddings[rows], self.labels[rows],
                       self.label_source, self.n_split_rows, self.n_unlabelled,
                       [self.groups[i] for i in rows] if self.groups is not None else None)

    def one_per_exam(self, views: Sequence[str] | None = None) -> np.ndarray:
        """Row per exam: the first frontal image, else the first image (restricted to `views` if given)."""
        best: dict[str, tuple[int, int, int]] = {}
        for i, (key, idx, view) in enumerate(zip(self.exam_keys, self.image_index, self.views)):
            if views is not None and view not in views:
                continue
            rank = (0 if view in FRONTAL else 1, int(idx), i)
            if key not in best or rank < best[key]:
                best[key] = rank
        return np.array(sorted(r[2] for r in best.values()), dtype=np.int64)


def inputs_fingerprint(data: EvalSet, split: str, settings: dict) -> str:
    """A digest of everything an evaluation's numbers depend on: rows, views, labels, vectors, patients, settings.

    Independent of row order (a compaction reorders the table without changing a value), so a
    nightly run whose scored exams did not change can keep the report it has.
    """
    import hashlib
    import json

    order = sorted(range(len(data)), key=lambda i: (data.exam_keys[i], int(data.image_index[i])))
    h = hashlib.sha256(json.dumps({"version": data.model_version, "split": split, "source": data.label_source,
                                   "settings": settings}, sort_keys=True, default=str).encode())
    h.update(json.dumps([[data.exam_keys[i], int(data.image_index[i]), data.views[i],
                          data.groups[i] if data.groups is not None else None] for i in order]).encode())
    h.update(np.ascontiguousarray(data.labels[order]).tobytes())
    h.update(np.ascontiguousarray(data.embeddings[order]).tobytes())
    return h.hexdigest()


def _vocabulary(findings: Sequence[str]):
    from radsim.data_contracts import Finding, Vocabulary

    return Vocabulary("published", "0", tuple(Finding(f, derived=f == "no_finding") for f in findings))


def truth_labels(truth: str | Path | pa.Table, keyer: IdKeyer, findings: Sequence[str]) -> dict[str, np.ndarray]:
    """exam_key → bool label vector (value 1 = present) from a labels-contract table keyed by exam_id."""
    from radsim.data_contracts import check_vocabulary, load_contract, read_input_table

    table = truth if isinstance(truth, pa.Table) else read_input_table(truth)
    vocab = _vocabulary(findings)
    check_vocabulary(table, vocab, "truth")
    contract = load_contract("labels", vocab)
    table = table.drop_columns([c for c in table.column_names if c not in contract.column_names])
    if "positive_findings" not in table.column_names and all(f in table.column_names for f in findings):
        # a validated subset may carry only the per-finding values: derive the list the contract requires
        cols = [table.column(f).to_pylist() for f in findings]
        pos = [[f for f, v in zip(findings, vals) if v == 1] for vals in zip(*cols)] if cols else []
        table = table.append_column("positive_findings", pa.array(pos, pa.list_(pa.string())))
    table = contract.validate(table)
    ids = table.column("exam_id").to_pylist()
    values = np.stack([np.asarray(table.column(f).to_pylist(), dtype=object) for f in findings], axis=1) if ids else \
        np.zeros((0, len(findings)), dtype=object)
    out: dict[str, np.ndarray] = {}
    for exam_id, row in zip(ids, values):
        out[keyer.exam_key(exam_id)] = np.array([v == 1 for v in row], dtype=bool)
    return out


def patient_keys(shards: str | Path | None) -> dict[str, str]:
    """exam_key → patient_key from a shard manifest (empty without one)."""
    if shards is None or not (Path(shards) / MANIFEST_FILE).exists():
        return {}
    import pyarrow.parquet as pq

    table = pq.read_table(Path(shards) / MANIFEST_FILE, columns=["exam_key", "patient_key"])
    return dict(zip(table.column("exam_key").to_pylist(), table.column("patient_key").to_pylist()))


def load_eval_set(
    version: PublishedVersion,
    *,
    split: str = DEFAULT_CONFIG.split,
    truth: str | Path | pa.Table | None = None,
    keyer: IdKeyer | None = None,
    shards: str | Path | None = None,
) -> EvalSet:
    """The rows to evaluate: one split (or 'all'), labelled by the table or by `truth`.

    With `shards`, each row carries its patient key, and the intervals resample patients.
    """
    if split not in SPLITS:
        raise UsageError(f"--split must be {', '.join(SPLITS[:-1])} or {SPLITS[-1]}, got {split!r}")
    table = version.read(["exam_key", "image_index", "split", "view_position", "embedding", "positive_findings",
                          "no_finding"])
    if split != "all":
        import pyarrow.compute as pc

        table = table.filter(pc.equal(table.column("split"), split))
    keys = table.column("exam_key").to_pylist()
    findings = list(version.findings)
    if truth is not None:
        if keyer is None:
            raise UsageError("--truth needs the pseudonymisation key (RADSIM_ID_KEY, or --demo-key for the demo)")
        if keyer.key_id != version.key_id:
            raise UsageError(
                f"the table was keyed with key_id {version.key_id!r} but this run's key is {keyer.key_id!r}: "
                "--truth ids would not match (use the same RADSIM_ID_KEY, or --demo-key for the demo)"
            )
        by_key = truth_labels(truth, keyer, findings)
        keep = np.array([k in by_key for k in keys], dtype=bool)
        labels = np.stack([by_key[k] for k, ok in zip(keys, keep) if ok]) if keep.any() else \
            np.zeros((0, len(findings)), bool)
        source = f"truth table {truth if not isinstance(truth, pa.Table) else '(in memory)'}"
    else:
        keep = np.array([v is not None for v in table.column("no_finding").to_pylist()], dtype=bool)
        labels = label_matrix([p for p, ok in zip(table.column("positive_findings").to_pylist(), keep) if ok], findings)
        source = "published report-derived labels (noisy)"
    idx = np.flatnonzero(keep)
    sub = table.take(pa.array(idx, pa.int64())) if len(idx) != table.num_rows else table
    emb = embedding_matrix(sub) if sub.num_rows else np.zeros((0, version.embedding_dim), np.float32)
    exam_keys = sub.column("exam_key").to_pylist()
    patients = patient_keys(shards)
    groups = [patients.get(k, k) for k in exam_keys] if patients else None
    return EvalSet(version.model_version, split, findings, exam_keys,
                   np.asarray(sub.column("image_index").to_pylist(), dtype=np.int64),
                   sub.column("view_position").to_pylist(), emb, labels, source, table.num_rows,
                   int(table.num_rows - len(idx)), groups)
