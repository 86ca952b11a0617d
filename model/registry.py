"""The warehouse's model registry: `models/<model_version>/` folders and `models/current.json`.

Training writes into a fresh folder; registering moves it under its version name, so a
half-trained model never sits where the pipeline looks for models. `current.json` names the
version that embeds and publishes; promotion rules (not worse than the current one) build on it.
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from radsim.data_contracts.atomic import atomic_output
from radsim.data_contracts.errors import UsageError

from .checkpoint import CARD_FILE, ModelCard

CURRENT_FILE = "current.json"


def read_card(model_dir: str | Path) -> ModelCard:
    path = Path(model_dir) / CARD_FILE
    try:
        return ModelCard.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise UsageError(f"no model card at {path}: not a trained model folder") from None


def register_model(trained_dir: str | Path, models_root: str | Path) -> Path:
    """Move a finished training folder to `models_root/<model_version>` and return that path."""
    trained_dir, models_root = Path(trained_dir), Path(models_root)
    card = read_card(trained_dir)
    target = models_root / card.model_version
    if target.exists():
        raise UsageError(f"model version {card.model_version} is already registered at {target}")
    models_root.mkdir(parents=True, exist_ok=True)
    os.replace(trained_dir, target)
    return target


def promote(models_root: str | Path, model_version: str, *, reason: str, previous: dict[str, Any] | None = None) -> Path:
    """Make `model_version` the current model; the record keeps its metrics and why it was promoted."""
    models_root = Path(models_root)
    card = read_card(models_root / model_version)
    record = {
        "model_version": model_version,
        "promoted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "metrics": card.metrics,
        "reason": reason,
        "previous": previous,
    }
    with atomic_output(models_root / CURRENT_FILE) as tmp:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return models_root / model_version


def current_model(models_root: str | Path) -> dict[str, Any] | None:
    """The current.json record, or None when no model was promoted yet."""
    path = Path(models_root) / CURRENT_FILE
    if not path.exists():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    if not (Path(models_root) / record["model_version"]).is_dir():
        raise UsageError(f"{path} names model {record['model_version']}, which is missing from {models_root}")
    return record
