"""The warehouse's model registry: `models/<model_version>/` folders and `models/current.json`.

Training writes into a fresh folder; registering moves it under its version name, so a
half-trained model never sits where the pipeline looks for models. `current.json` names the
version that embeds and publishes, and keeps the last refused or undecided candidate and why;
this module is its only writer (radsim.model.promotion decides, then calls it).
"""
from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from radsim.data_contracts.atomic import write_json_atomic
from radsim.data_contracts.errors import UsageError
from radsim.warehouse.layout import CURRENT_FILE as _CURRENT_FILE

from .card import read_card

CURRENT_FILE = _CURRENT_FILE


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


def promote(models_root: str | Path, model_version: str, *, reason: str, previous: dict[str, Any] | None = None,
            decision: dict[str, Any] | None = None) -> Path:
    """Make `model_version` the current model; the record keeps its metrics, the decision and why."""
    models_root = Path(models_root)
    card = read_card(models_root / model_version)
    record = {
        "model_version": model_version,
        "promoted_at": _now(),
        "metrics": card.metrics,
        "reason": reason,
        "previous": previous,
        "decision": decision,
    }
    write_json_atomic(models_root / CURRENT_FILE, record)
    return models_root / model_version


def record_decision(models_root: str | Path, outcome: str, decision: dict[str, Any]) -> None:
    """Keep a candidate that was not promoted in current.json as `last_<outcome>`; the current model stays."""
    path = Path(models_root) / CURRENT_FILE
    doc = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"model_version": None}
    doc[f"last_{outcome}"] = {**decision, "decided_at": _now()}
    write_json_atomic(path, doc)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def current_model(models_root: str | Path) -> dict[str, Any] | None:
    """The current.json record, or None when no model was promoted yet."""
    path = Path(models_root) / CURRENT_FILE
    if not path.exists():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    if record.get("model_version") is None:  # only refused or undecided candidates so far
        return None
    if not (Path(models_root) / record["model_version"]).is_dir():
        raise UsageError(f"{path} names model {record['model_version']}, which is missing from {models_root}")
    return record
