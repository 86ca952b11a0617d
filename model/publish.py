"""Embed every sharded image with a trained model and publish the table (DESIGN §4, §5, §12).

The step is three jobs, one module each, re-exported here:
- radsim.model.shard_embedding: embed the shards (`embed_shards`, `embed_part`);
- radsim.model.reuse: reuse the rows the model's version already published (`plan_reuse`);
- radsim.warehouse.published: the writing itself (staging, validation, the atomic swap and
  the publish record), which imports no torch.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from radsim.data_contracts import UsageError
from radsim.warehouse.published import PublishResult, embeddings_table, publish_table, table_metadata_for

from .checkpoint import LoadedModel, load_model
from .embedded import (EmbeddedPart, EmbeddedRows, EmbeddedShards, compacted_shards, shard_digests,
                       shard_row_counts)
from .reuse import MODEL_FINGERPRINT, ReusePlan, merge_reused, model_fingerprint, plan_reuse
from .compatibility import check_compatible
from .shard_embedding import DEFAULT_BATCH_SIZE, PartSubmitter, embed_part, embed_shards, shard_groups

__all__ = [  # the publication step's names, wherever they live
    "DEFAULT_BATCH_SIZE", "MODEL_FINGERPRINT", "EmbeddedPart", "EmbeddedRows", "EmbeddedShards", "PartSubmitter",
    "ReusePlan", "check_compatible", "compacted_shards", "embed_part", "embed_shards", "merge_reused",
    "model_fingerprint", "plan_reuse", "publish", "publish_embedded", "shard_digests", "shard_groups",
    "shard_row_counts",
]


def publish_embedded(embedded: EmbeddedShards, loaded: LoadedModel, published_dir: str | Path, **kw: Any) -> PublishResult:
    """Write `embedded` as the model's version of the embeddings table (atomic, with a publish record)."""
    card = loaded.card
    if embedded.embeddings.shape[1] != card.embedding_dim:
        raise UsageError(f"embeddings have D={embedded.embeddings.shape[1]}, model card says {card.embedding_dim}")
    table = embeddings_table(
        exam_keys=embedded.exam_keys, image_index=embedded.image_index, splits=embedded.splits,
        view_positions=embedded.view_positions, embeddings=embedded.embeddings, label_values=embedded.label_values,
        findings=embedded.vocabulary["findings"], model_version=card.model_version, key_id=embedded.key_id,
    )
    card_doc = json.loads(card.to_json())
    meta = table_metadata_for(model_version=card.model_version, key_id=embedded.key_id,
                              findings=embedded.vocabulary["findings"], vocabulary_name=str(embedded.vocabulary["name"]),
                              vocabulary_version=str(embedded.vocabulary["version"]), model_card=card_doc)
    splits = {s: embedded.splits.count(s) for s in sorted(set(embedded.splits))}
    extra = {
        "model": model_fingerprint(card, loaded.path),
        "rows_by_split": splits,
        "rows_labelled": sum(v is not None for v in embedded.label_values),
        "embed_images_per_s": round(embedded.images_per_s, 1),
        "reused_rows": embedded.reused_rows,
        "shards": dict(embedded.shard_digests),  # what plan_reuse compares a later run's shards with
        "shard_rows": dict(embedded.shard_rows),  # ... and cuts a compacted shard's rows by
    }
    return publish_table(table, published_dir, model_version=card.model_version, embedding_dim=card.embedding_dim,
                         extra_metadata=meta, record_extra=extra, **kw)


def publish(model_dir: str | Path, shard_dir: str | Path, published_dir: str | Path, *,
            batch_size: int = DEFAULT_BATCH_SIZE, device: str = "auto", progress: bool = False,
            make_current: bool = True) -> PublishResult:
    """`radsim publish`: load the model, embed every sharded image, publish atomically (as the current version)."""
    loaded = load_model(model_dir, device="cpu")
    embedded = embed_shards(loaded, shard_dir, batch_size=batch_size, device=device, progress=progress)
    reason = "published with radsim publish" if make_current else None
    return publish_embedded(embedded, loaded, published_dir, make_current=make_current, current_reason=reason)
