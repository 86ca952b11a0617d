"""Promotion: a retrained model replaces the current one only when it is not worse; current.json says why."""
from __future__ import annotations

import json

from radsim.model.checkpoint import CARD_FILE, ModelCard
from radsim.model.registry import promote
from radsim.warehouse.promotion import compare, promote_if_not_worse


def _model(models, version, p10, auc):
    folder = models / version
    folder.mkdir(parents=True)
    card = ModelCard(model_version=version, backbone="small", embedding_dim=8, image_size=64, loss="ml2",
                     vocabulary_name="radsim-default", vocabulary_version="1", findings=["no_finding"], key_id="k",
                     data_manifest_sha256="0" * 64, created_at="2026-01-01T00:00:00Z",
                     metrics={"precision_at_10": p10, "normal_auc": auc})
    (folder / CARD_FILE).write_text(card.to_json())
    return folder


def test_worse_model_is_not_promoted_and_current_json_says_why(tmp_path):
    models = tmp_path / "models"
    _model(models, "v1", 0.70, 0.80)
    promote(models, "v1", reason="first")
    _model(models, "v2", 0.75, 0.60)  # better P@10, worse normal AUC
    decision = promote_if_not_worse(models, "v2")
    assert not decision.promoted
    current = json.loads((models / "current.json").read_text())
    assert current["model_version"] == "v1"
    assert current["last_refused"]["candidate"] == "v2"
    assert "normal_auc 0.600 < current 0.800" in current["last_refused"]["reason"]
    assert current["last_refused"]["comparison"]["precision_at_10"] == {"candidate": 0.75, "current": 0.70}


def test_not_worse_model_is_promoted_with_the_comparison(tmp_path):
    models = tmp_path / "models"
    _model(models, "v1", 0.70, 0.80)
    promote(models, "v1", reason="first")
    _model(models, "v2", 0.70, 0.85)
    assert promote_if_not_worse(models, "v2").promoted
    current = json.loads((models / "current.json").read_text())
    assert current["model_version"] == "v2" and current["reason"].startswith("promoted: not worse")
    assert current["previous"]["model_version"] == "v1"
    assert current["previous"]["comparison"]["normal_auc"] == {"candidate": 0.85, "current": 0.80}


def test_first_model_is_promoted(tmp_path):
    models = tmp_path / "models"
    _model(models, "v1", None, None)
    assert promote_if_not_worse(models, "v1").promoted
    assert json.loads((models / "current.json").read_text())["model_version"] == "v1"


def test_missing_candidate_metric_counts_as_worse():
    ok, reason, _ = compare({"precision_at_10": None, "normal_auc": 0.9}, {"precision_at_10": 0.5, "normal_auc": 0.5})
    assert not ok and "precision_at_10 n/a" in reason
