"""The model folder: what training writes and what publication, `similar` and resume read.

MODEL_DIR/
  model.pt          best weights + everything needed to rebuild and use the encoder
  last.pt           latest weights + optimiser/scheduler/step state, for --resume
  model_card.json   human-readable card (DESIGN §8): backbone, loss, D, vocabulary, data hash, metrics

Both .pt files are plain dicts of tensors and JSON-able values, so they load with
`torch.load(weights_only=True)`: a checkpoint never runs code on the machine that reads it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from radsim.data_contracts.atomic import atomic_output
from radsim.data_contracts.errors import UsageError
from radsim.warehouse.card import ModelCard
from radsim.warehouse.layout import BEST_FILE as _BEST_FILE
from radsim.warehouse.layout import LAST_FILE as _LAST_FILE

FORMAT = "radsim-model/1"
BEST_FILE, LAST_FILE = _BEST_FILE, _LAST_FILE


def save_checkpoint(path: str | Path, model: torch.nn.Module, card: ModelCard, **extra: Any) -> Path:
    """Write model weights with the card's essentials (and any resume state in `extra`) atomically."""
    path = Path(path)
    state = {k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()}
    payload = {"format": FORMAT, "state_dict": state, "card": json.loads(card.to_json()), **extra}
    with atomic_output(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise UsageError(f"{path} is not a readable radsim checkpoint: {str(exc).splitlines()[0]}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UsageError(
            f"{path} is not a radsim checkpoint "
            f"(format {payload.get('format') if isinstance(payload, dict) else None!r}, expected {FORMAT!r})"
        )
    return payload


@dataclass
class LoadedModel:
    model: torch.nn.Module
    card: ModelCard
    path: Path

    @property
    def model_version(self) -> str:
        return self.card.model_version


def load_model(model_dir_or_file: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the encoder from a model folder (its model.pt) or a checkpoint file, in eval mode."""
    from .encoders import build_encoder

    path = Path(model_dir_or_file)
    if path.is_dir():
        path = path / BEST_FILE
    payload = read_checkpoint(path)
    card = ModelCard.from_dict(payload["card"])
    model = build_encoder(card.backbone, embedding_dim=card.embedding_dim)
    missing, unexpected = model.load_state_dict(payload["state_dict"], strict=False)
    if missing or unexpected:
        raise UsageError(
            f"{path} does not fit backbone {card.backbone!r}: "
            f"missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]}"
        )
    return LoadedModel(model.to(device).eval(), card, path)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """DDP and torch.compile wrap the module; checkpoints hold the plain one's keys."""
    inner = getattr(model, "module", model)
    return getattr(inner, "_orig_mod", inner)
