"""The model card (DESIGN §8): what a model is, how it was trained and validated, and its gate decision.

JSON beside the weights, and torch-free, so that promotion, the registry and the published
table's metadata read it without importing torch.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radsim.data_contracts.atomic import write_json_atomic
from radsim.data_contracts.errors import UsageError
from radsim.warehouse.layout import CARD_FILE as _CARD_FILE

CARD_FILE = _CARD_FILE


@dataclass
class ModelCard:
    """DESIGN §8's model card. `intended_use` and the disclaimer are part of the contract with users."""

    model_version: str
    backbone: str
    embedding_dim: int
    image_size: int
    loss: str
    vocabulary_name: str
    vocabulary_version: str
    findings: list[str]
    key_id: str
    data_manifest_sha256: str
    created_at: str
    metrics: dict[str, Any] = field(default_factory=dict)  # best validation metrics
    baseline_metrics: dict[str, Any] = field(default_factory=dict)  # untrained encoder, same validation split
    training: dict[str, Any] = field(default_factory=dict)  # epochs, batch size, lr, seed, device, images/s
    promotion: dict[str, Any] = field(default_factory=dict)  # the gate decision (radsim.model.gates)
    intended_use: str = (
        "Research on radiological similarity: retrieval of chest radiographs that share report-derived "
        "findings, and analysis of the embedding space. Labels are extracted automatically from reports and are noisy."
    )
    disclaimer: str = "Not a medical device. Not for diagnosis, triage or any clinical decision."

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def write_card(model_dir: str | Path, card: ModelCard) -> Path:
    return write_json_atomic(Path(model_dir) / CARD_FILE, card.__dict__)


def read_card(model_dir: str | Path) -> ModelCard:
    path = Path(model_dir) / CARD_FILE
    try:
        return ModelCard.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise UsageError(f"no model card at {path}: not a trained model folder") from None


def update_card(model_dir: str | Path, **fields: Any) -> None:
    """Set top-level fields of a card on disk (atomically), keeping every other field as written."""
    path = Path(model_dir) / CARD_FILE
    card = json.loads(path.read_text(encoding="utf-8"))
    write_json_atomic(path, {**card, **fields})
