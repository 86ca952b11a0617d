"""Rows of the embeddings contract, their file metadata, and the matrix views readers use.

pyarrow and numpy only (no torch): evaluation and `similar` read through here, and the model's
publish step writes through here.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from .layout import META_FINDINGS, META_KEY_ID, META_MODEL_CARD, META_MODEL_VERSION


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

    Wide on purpose: one argument per column of the embeddings contract, so a caller cannot publish a table
    that lacks one.
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
