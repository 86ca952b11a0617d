"""A tiny synthetic cohort, sharded under the demo key, and an untrained model folder (session-scoped).

Some exams are left without a labels row so that unlabelled images are published too.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch

N_EXAMS = 40
IMAGE_SIZE = 64
DIM = 16
UNLABELLED = 3


@dataclass(frozen=True)
class Cohort:
    root: Path
    cohort_dir: Path
    exams: Path
    labels: Path
    truth: Path
    shards: Path
    unlabelled_ids: tuple[str, ...]


def make_model_dir(out: Path, *, version: str = "v1", dim: int = DIM, image_size: int = IMAGE_SIZE,
                   key_id: str | None = None, findings: list[str] | None = None, seed: int = 0) -> Path:
    from radsim.data_contracts import default_vocabulary, demo_keyer
    from radsim.model.checkpoint import save_checkpoint
    from radsim.model.encoders import build_encoder
    from radsim.warehouse.card import ModelCard, write_card

    torch.manual_seed(seed)
    model = build_encoder("small", embedding_dim=dim)
    vocab = default_vocabulary()
    card = ModelCard(model_version=version, backbone="small", embedding_dim=dim, image_size=image_size, loss="ml2",
                     vocabulary_name=vocab.name, vocabulary_version=vocab.version,
                     findings=list(findings if findings is not None else vocab.names),
                     key_id=key_id or demo_keyer().key_id, data_manifest_sha256="0" * 64,
                     created_at="2024-01-01T00:00:00Z")
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / "model.pt", model, card)
    write_card(out, card)
    return out


@pytest.fixture(scope="session")
def cohort(tmp_path_factory) -> Cohort:
    from radsim.data_contracts import demo_keyer, write_parquet_atomic
    from radsim.data_contracts.ingest import ingest_manifests
    from radsim.imaging.shards import write_shards
    from radsim.nlp.runner import label_file
    from radsim.synthetic import generate_cohort

    root = tmp_path_factory.mktemp("publish-cohort")
    summary = generate_cohort(root / "cohort", exams=N_EXAMS, image_size=IMAGE_SIZE, progress=False)
    exams = write_parquet_atomic(ingest_manifests([summary.exams_path]).exams, root / "exams.parquet")
    label_file(exams, root / "all_labels.parquet", progress=False)
    labels = pq.read_table(root / "all_labels.parquet")
    unlabelled = tuple(labels.column("exam_id").to_pylist()[:UNLABELLED])
    kept = labels.filter(
        pc.invert(pc.is_in(labels.column("exam_id"), value_set=labels.column("exam_id").slice(0, UNLABELLED)))
    )
    pq.write_table(kept, root / "labels.parquet")
    write_shards(exams, root / "labels.parquet", root / "shards", keyer=demo_keyer(), image_size=IMAGE_SIZE,
                 progress=False)
    return Cohort(
        root, root / "cohort", exams, root / "labels.parquet", summary.truth_path, root / "shards", unlabelled
    )


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("model") / "v1")


@pytest.fixture(scope="session")
def published(cohort, model_dir, tmp_path_factory) -> Path:
    """The cohort published once under model v1 (tests that modify a folder make their own)."""
    from radsim.model.publish import publish

    out = tmp_path_factory.mktemp("warehouse") / "published"
    publish(model_dir, cohort.shards, out, device="cpu")
    return out


@pytest.fixture(scope="session")
def model_factory():
    """make_model_dir(out, version=..., dim=..., key_id=..., findings=..., image_size=..., seed=...)."""
    return make_model_dir
