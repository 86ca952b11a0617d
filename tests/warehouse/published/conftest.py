"""Published tables written without torch: the store is pure pyarrow."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from radsim.warehouse import published as P

D = 8
FINDINGS = ["no_finding", "cardiomegaly", "edema"]


def publish_synthetic(out: Path, n: int, seed: int, version: str = "v1", *, make_current: bool = False,
                      reason: str | None = None) -> P.PublishResult:
    """A contract-valid embeddings table of n rows for `version`, published into `out`."""
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((n, D)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    values = [[1, 0, 0] if i % 3 == 0 else [0, 1, int(i % 2)] for i in range(n)]
    table = P.embeddings_table(exam_keys=[f"{seed:02d}{i:030x}" for i in range(n)], image_index=[0] * n,
                               splits=["test"] * n, view_positions=["PA"] * n, embeddings=emb, label_values=values,
                               findings=FINDINGS, model_version=version, key_id="demo-test")
    meta = P.table_metadata_for(model_version=version, key_id="demo-test", findings=FINDINGS, vocabulary_name="t",
                                vocabulary_version="1", model_card={"model_version": version})
    return P.publish_table(table, out, model_version=version, embedding_dim=D, extra_metadata=meta,
                           make_current=make_current, current_reason=reason)


@pytest.fixture
def publish() -> Callable[..., P.PublishResult]:
    return publish_synthetic
