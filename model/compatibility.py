"""Does a model fit the shards? The checks before training from, resuming or embedding with a model.

A checkpoint resumed or used as --init-weights must have the requested backbone, D, vocabulary
and image size; a model that embeds shards must share their pseudonymisation key and vocabulary
and be no larger than their images. Each mismatch is one UsageError that says what to do.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from radsim.data_contracts import UsageError
from radsim.data_contracts.ids import META_KEY_ID

from .checkpoint import BEST_FILE, LoadedModel
from .data import ShardInfo


# ------------------------------------------------------------------------- compatibility
def check_checkpoint_fits(card: dict[str, Any], info: ShardInfo, backbone: str, embedding_dim: int | None,
                   image_size: int | None, what: str, path: Path) -> None:
    """A checkpoint (resumed or used as init) must fit the shards and the requested model."""
    if card.get("backbone") != backbone:
        raise UsageError(f"{what} {path} is a {card.get('backbone')!r} checkpoint, not {backbone!r}: "
                         f"use --backbone {card.get('backbone')} or another checkpoint")
    if embedding_dim is not None and int(card.get("embedding_dim", -1)) != embedding_dim:
        raise UsageError(f"{what} {path} has embedding dimension {card.get('embedding_dim')}, not {embedding_dim}")
    if list(card.get("findings") or []) != info.findings:
        raise UsageError(f"{what} {path} was trained with vocabulary {card.get('vocabulary_name')!r} "
                         f"({len(card.get('findings') or [])} findings) but the shards in {info.shards_dir} use "
                         f"{info.vocabulary_name!r} ({len(info.findings)} findings)")
    model_size = int(card.get("image_size", 0))
    if image_size is None and model_size != info.image_size:
        raise UsageError(
            f"the shards in {info.shards_dir} are {info.image_size} px but {what} {path} was trained "
            f"at {model_size} px: pass --image-size {model_size} to resize on the fly, or use other shards"
        )
    if image_size is not None and model_size != image_size:
        raise UsageError(f"{what} {path} was trained at {model_size} px, not --image-size {image_size}")


def is_radsim_checkpoint(path: Path) -> bool:
    if path.is_dir():
        return (path / BEST_FILE).is_file()
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not ours; load_init_weights reports properly
        return False
    return isinstance(payload, dict) and "format" in payload and "card" in payload


def check_compatible(loaded: LoadedModel, meta: dict[str, str], shard_dir: str | Path) -> None:
    """Refuse shards made under another key or vocabulary than the model's, or smaller than its input.

    Larger shards are resized to the model's size on the fly, as training does.
    """
    card = loaded.card
    key_id = meta.get(META_KEY_ID)
    if key_id != card.key_id:
        raise UsageError(f"shards in {shard_dir} were keyed with key_id {key_id!r} but model {card.model_version} "
                         f"was trained under {card.key_id!r}: a different pseudonymisation key; use matching shards")
    findings = json.loads(meta.get("radsim.vocabulary.findings", "null") or "null")
    if findings != list(card.findings):
        raise UsageError(f"shards in {shard_dir} use another vocabulary ({len(findings or [])} findings) than model "
                         f"{card.model_version} ({len(card.findings)} findings)")
    size = meta.get("radsim.image_size")
    if size is None or int(size) < int(card.image_size):
        raise UsageError(f"shards in {shard_dir} hold {size}px images but model {card.model_version} expects "
                         f"{card.image_size}px: reshard with --image-size {card.image_size} or larger")
