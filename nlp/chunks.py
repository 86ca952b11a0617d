"""Label one chunk of (exam_id, text) pairs: the unit of work of every labelling path.

In the parent (one process), in `worker` processes, and in tasks of a Prefect runner alike.
Imports no spaCy at its top level: the labeler arrives built.
"""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from radsim.data_contracts import load_contract, rows_to_table
from radsim.data_contracts.vocabulary import Vocabulary

from .certainty import label_metadata
from .text import Decoded

if TYPE_CHECKING:
    from .labeler import Labeler

def label_chunk(labeler: Labeler, contract_vocab: Vocabulary, items: list[tuple[str, object]],
                 batch_size: int) -> tuple[pa.Table, list[tuple[str, str, str]]]:
    """Label (exam_id, text) pairs → (validated labels table, [(exam_id, reason, message)])."""
    rows: list[dict[str, Any]] = []
    failures: list[tuple[str, str, str]] = []
    # spaCy's string store grows with every new token (ids, dates, typos) unless strings are scoped
    # to a memory zone; rows hold plain Python strings, so nothing outlives the zone.
    zone = labeler.nlp.memory_zone() if hasattr(labeler.nlp, "memory_zone") else contextlib.nullcontext()
    with zone:
        results = labeler.label_many((t for _, t in items), batch_size=batch_size)
        for (exam_id, _), result in zip(items, results):
            if not isinstance(result, Decoded):
                rows.append(result.as_row(exam_id, labeler.version))
            else:
                failures.append((exam_id, result.reason or "undecodable_text", result.message))
    contract = load_contract("labels", contract_vocab)
    table = contract.validate(
        rows_to_table(contract, rows), label_metadata(labeler.certainty_threshold, labeler.version)
    )
    return table, failures
