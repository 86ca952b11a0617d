"""Embed every sharded image with a trained model and publish the table (DESIGN §4, §5, §12).

The step is three jobs, one module each, re-exported here:
- radsim.model.shard_embedding: embed the shards (`embed_shards`, `embed_part`);
- radsim.model.reuse: reuse the rows the model's version already published (`plan_reuse`);
- radsim.warehouse.published: the writing itself (staging, validation, the atomic swap and
  the publish record), which imports no torch.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from radsim.data_contracts import UsageError
from radsim.evaluation.display import decision_text
from radsim.warehouse.published import PublishResult, embeddings_table, publish_table, table_metadata_for

from .checkpoint import LoadedModel, load_model
from .compatibility import check_compatible
from .embedded import EmbeddedPart, EmbeddedRows, EmbeddedShards, compacted_shards, shard_digests, shard_row_counts
from .reuse import MODEL_FINGERPRINT, ReusePlan, merge_reused, model_fingerprint, plan_reuse
from .shard_embedding import DEFAULT_BATCH_SIZE, PartSubmitter, embed_part, embed_shards, shard_groups

__all__ = [  # the publication step's names, wherever they live
    "DEFAULT_BATCH_SIZE", "MODEL_FINGERPRINT", "EmbeddedPart", "EmbeddedRows", "EmbeddedShards", "PartSubmitter",
    "ReusePlan", "check_compatible", "compacted_shards", "embed_part", "embed_shards", "merge_reused",
    "model_fingerprint", "plan_reuse", "publish", "publish_embedded", "CurrentChoice", "current_choice",
    "shard_digests", "shard_groups", "shard_row_counts",
]


def publish_embedded(embedded: EmbeddedShards, loaded: LoadedModel, published_dir: str | Path, *,
                     promotion: dict[str, Any] | None = None, **kw: Any) -> PublishResult:
    """Write `embedded` as the model's version of the embeddings table (atomic, with a publish record).

    `promotion`, a gate decision made at publication (radsim publish), replaces the card's own in
    the table's model card and the publish record.
    """
    card = loaded.card if promotion is None else replace(loaded.card, promotion=promotion)
    if embedded.embeddings.shape[1] != card.embedding_dim:
        raise UsageError(f"embeddings have D={embedded.embeddings.shape[1]}, model card says {card.embedding_dim}")
    table = embeddings_table(
        exam_keys=embedded.exam_keys, image_index=embedded.image_index, splits=embedded.splits,
        view_positions=embedded.view_positions, embeddings=embedded.embeddings, label_values=embedded.label_values,
        findings=embedded.vocabulary["findings"], model_version=card.model_version, key_id=embedded.key_id,
    )
    card_doc = json.loads(card.to_json())
    meta = table_metadata_for(
        model_version=card.model_version,
        key_id=embedded.key_id,
        findings=embedded.vocabulary["findings"],
        vocabulary_name=str(embedded.vocabulary["name"]),
        vocabulary_version=str(embedded.vocabulary["version"]),
        model_card=card_doc,
    )
    splits = {s: embedded.splits.count(s) for s in sorted(set(embedded.splits))}
    extra = {
        "model": model_fingerprint(card, loaded.path),
        "rows_by_split": splits,
        "rows_labelled": sum(v is not None for v in embedded.label_values),
        "embed_images_per_s": round(embedded.images_per_s, 1),
        "reused_rows": embedded.reused_rows,
        "shards": dict(embedded.shard_digests),  # what plan_reuse compares a later run's shards with
        "shard_rows": dict(embedded.shard_rows),  # ... and cuts a compacted shard's rows by
        "gate_decision": decision_text(card.promotion) if card.promotion else None,  # versions.parquet's reason
    }
    return publish_table(table, published_dir, model_version=card.model_version, embedding_dim=card.embedding_dim,
                         extra_metadata=meta, record_extra=extra, **kw)


def publish(model_dir: str | Path, shard_dir: str | Path, published_dir: str | Path, *,
            batch_size: int = DEFAULT_BATCH_SIZE, device: str = "auto", progress: bool = False,
            make_current: bool = True, force: str | None = None) -> tuple[PublishResult, CurrentChoice]:
    """`radsim publish`: the gates' decision, then embed every sharded image and publish atomically.

    The version becomes the current one only when `make_current` and the gates promoted the model,
    or `force` (where a force came from) overrides them; the choice says which and why.
    """
    loaded = load_model(model_dir, device="cpu")
    choice = current_choice(model_dir, published_dir, make_current, force)
    embedded = embed_shards(loaded, shard_dir, batch_size=batch_size, device=device, progress=progress)
    return publish_embedded(embedded, loaded, published_dir, make_current=choice.current,
                            current_reason=choice.reason, promotion=choice.decision), choice


@dataclass(frozen=True)
class CurrentChoice:
    """Whether `radsim publish` makes the version current, and the sentence that says why."""

    current: bool
    reason: str
    decision: dict[str, Any]

    def summary(self) -> str:
        if self.current:
            return f"  made current: {self.reason}"
        return f"  published beside the current version, not made current: {self.reason}"


def current_choice(model_dir: str | Path, published_dir: str | Path, make_current: bool,
                   force: str | None) -> CurrentChoice:
    """The gates' decision on the model (recorded in its card) and what it means for the current version."""
    from radsim.model.promotion import publication_decision

    gate = publication_decision(model_dir, published_dir, force=force)
    said = f"{gate.state}: {gate.reason}"
    decision = {**gate.as_dict(), "reason": said, "decided_by": "radsim publish"}
    if not make_current:
        return CurrentChoice(False, f"--no-current (the gates said {said})", decision)
    if gate.promote:
        return CurrentChoice(True, f"published with radsim publish; {said}", decision)
    return CurrentChoice(False, f"the gates did not promote this model ({said}); --force-promote makes it current, "
                         "recorded as forced", decision)
