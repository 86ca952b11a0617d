"""Model registry: trained folders move under their version; current.json names the live model."""
from __future__ import annotations

import json

import pytest

from radsim.data_contracts import UsageError
from radsim.warehouse.card import ModelCard, write_card
from radsim.warehouse.registry import current_model, promote, register_model


def _trained(tmp_path, version="small-ml2-20260101000000-abcd1234", p10=0.9):
    folder = tmp_path / "training-tmp"
    folder.mkdir()
    card = ModelCard(version, "small", 16, 64, "ml2", "radsim-default", "1.0.0", ["no_finding"], "demo-x", "h", "t",
                     metrics={"precision_at_10": p10})
    write_card(folder, card)
    (folder / "model.pt").write_bytes(b"weights")
    return folder


def test_register_moves_folder_under_its_version(tmp_path):
    target = register_model(_trained(tmp_path), tmp_path / "models")
    assert target.name == "small-ml2-20260101000000-abcd1234" and (target / "model.pt").exists()
    assert not (tmp_path / "training-tmp").exists()
    assert current_model(tmp_path / "models") is None


def test_promote_records_metrics_and_reason(tmp_path):
    models = tmp_path / "models"
    target = register_model(_trained(tmp_path), models)
    promote(models, target.name, reason="first model")
    record = current_model(models)
    assert record["model_version"] == target.name and record["reason"] == "first model"
    assert record["metrics"] == {"precision_at_10": 0.9}
    assert json.loads((models / "current.json").read_text())["previous"] is None


def test_registering_a_version_twice_is_refused(tmp_path):
    models = tmp_path / "models"
    register_model(_trained(tmp_path), models)
    with pytest.raises(UsageError, match="already registered"):
        register_model(_trained(tmp_path), models)


def test_current_pointing_at_a_missing_model_is_an_error(tmp_path):
    models = tmp_path / "models"
    promote(models, register_model(_trained(tmp_path), models).name, reason="first")
    import shutil

    shutil.rmtree(models / "small-ml2-20260101000000-abcd1234")
    with pytest.raises(UsageError, match="missing"):
        current_model(models)


def test_folder_without_card_is_not_a_model(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(UsageError, match="no model card"):
        register_model(tmp_path / "x", tmp_path / "models")
