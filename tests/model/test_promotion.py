"""Promotion through the gates: published or promoted only when measurably better; current.json says why."""
from __future__ import annotations

import json

from radsim.model.gates import GatePolicy, decide
from radsim.model.promotion import promote_through_gates
from radsim.warehouse.card import CARD_FILE, ModelCard
from radsim.warehouse.registry import current_model, promote

UNTRAINED = {"precision_at_10": 0.40, "normal_auc": 0.60}


def metrics(p10, p10_ci, auc=None, auc_ci=None, patients=60, cosine=0.2, chance=0.35):
    out = {"precision_at_10": p10, "precision_at_10_ci": p10_ci, "precision_at_10_chance": chance,
           "normal_auc_chance": 0.5, "n_patients": patients, "mean_pairwise_cosine": cosine}
    if auc is not None:
        out.update(normal_auc=auc, normal_auc_ci=auc_ci)
    return out


def _model(models, version, m, untrained=UNTRAINED):
    folder = models / version
    folder.mkdir(parents=True)
    card = ModelCard(model_version=version, backbone="small", embedding_dim=8, image_size=64, loss="ml2",
                     vocabulary_name="radsim-default", vocabulary_version="1", findings=["no_finding"], key_id="k",
                     data_manifest_sha256="0" * 64, created_at="2026-01-01T00:00:00Z", metrics=m,
                     baseline_metrics={"untrained_encoder": untrained})
    (folder / CARD_FILE).write_text(card.to_json())
    return folder


def test_a_model_clearly_above_chance_and_the_untrained_encoder_is_promoted():
    d = decide(metrics(0.60, [0.52, 0.68], 0.80, [0.72, 0.87]), UNTRAINED)
    assert d.outcome == "promoted" and d.promote and "above chance and the untrained encoder" in d.reason


def test_a_below_chance_model_is_refused():
    d = decide(metrics(0.30, [0.25, 0.35], 0.18, [0.10, 0.27]), UNTRAINED)
    assert d.outcome == "refused" and not d.promote
    assert "normal_auc 0.180 [0.100, 0.270] is below chance (0.500)" in d.reason


def test_a_difference_within_the_interval_is_not_enough():
    d = decide(metrics(0.45, [0.36, 0.54], 0.66, [0.55, 0.76]), UNTRAINED)  # above, but not beyond the interval
    assert d.outcome == "refused" and "does not clear the untrained encoder's 0.400" in d.reason


def test_a_collapsed_embedding_is_refused_for_that_reason():
    d = decide(metrics(0.60, [0.52, 0.68], cosine=0.992), UNTRAINED)
    assert (
        d.outcome == "refused"
        and d.collapsed
        and d.reason.startswith("collapsed embedding: mean pairwise cosine 0.992")
    )


def test_collapse_is_checked_and_recorded_when_undecided_and_when_forced():
    d = decide(metrics(0.90, [0.85, 0.95], patients=12, cosine=0.9991), UNTRAINED, force="--force-promote")
    assert d.promote and d.forced and d.collapsed and d.state == "forced" and d.forced_by == "--force-promote"
    assert d.reason.startswith("by --force-promote, overriding undecided: validation split of 12 patients")
    assert d.reason.endswith("the embedding collapsed (mean pairwise cosine 0.9991 > 0.9)")
    record = d.as_dict()
    assert record["collapsed"] is True and record["checks"]["collapsed"] is True and record["state"] == "forced"
    healthy = decide(metrics(0.90, [0.85, 0.95], patients=12), UNTRAINED)
    assert healthy.outcome == "undecided" and healthy.collapsed is False and "collapsed" not in healthy.reason


def test_the_gates_read_the_verdicts_and_skip_a_metric_too_few_to_judge():
    m = metrics(0.60, [0.52, 0.68])
    m.update(normal_auc=0.0, normal_auc_verdict="too few to judge", normal_auc_note="1 normal and 9 abnormal exams")
    d = decide(m, UNTRAINED)
    assert d.outcome == "promoted" and "normal_auc" not in d.checks and d.checks["normal_auc_too_few"]
    m.update(precision_at_10_verdict="not distinguishable")  # the card's own verdict wins over its interval
    assert decide(m, UNTRAINED).outcome == "refused"
    m.update(precision_at_10_verdict="too few to judge")
    assert decide(m, UNTRAINED).outcome == "undecided"


def test_a_too_small_validation_split_is_undecided():
    d = decide(metrics(0.90, [0.85, 0.95], patients=12), UNTRAINED, policy=GatePolicy(min_val_patients=30))
    assert d.outcome == "undecided" and "12 patients, fewer than the 30" in d.reason


def test_force_promote_overrides_and_says_so():
    d = decide(metrics(0.30, [0.25, 0.35]), UNTRAINED, force="--force-promote")
    assert d.promote and d.forced and d.reason.startswith("by --force-promote, overriding refused")


def test_noise_against_the_current_model_does_not_block_a_retrain(tmp_path):
    models = tmp_path / "models"
    _model(models, "v1", metrics(0.60, [0.52, 0.68], 0.80, [0.72, 0.87]))
    promote(models, "v1", reason="first")
    _model(models, "v2", metrics(0.59, [0.51, 0.67], 0.79, [0.70, 0.86]))  # a hair lower: within its interval
    assert promote_through_gates(models, "v2").promoted
    current = json.loads((models / "current.json").read_text())
    assert current["model_version"] == "v2" and current["previous"]["model_version"] == "v1"
    assert current["decision"]["outcome"] == "promoted"


def test_a_clearly_worse_retrain_is_refused_and_recorded_everywhere(tmp_path):
    models = tmp_path / "models"
    _model(models, "v1", metrics(0.80, [0.75, 0.85], 0.90, [0.85, 0.94]))
    promote(models, "v1", reason="first")
    _model(models, "v2", metrics(0.60, [0.52, 0.68], 0.80, [0.72, 0.87]))
    decision = promote_through_gates(models, "v2")
    assert not decision.promoted and decision.gate.outcome == "refused"
    current = json.loads((models / "current.json").read_text())
    assert current["model_version"] == "v1"
    assert "worse than the current model's 0.800" in current["last_refused"]["reason"]
    card = json.loads((models / "v2" / CARD_FILE).read_text())
    assert card["promotion"]["outcome"] == "refused" and card["promotion"]["reason"] == decision.reason


def test_an_undecided_first_model_leaves_no_current_model_and_a_record(tmp_path):
    models = tmp_path / "models"
    _model(models, "v1", metrics(0.90, [0.85, 0.95], patients=5))
    decision = promote_through_gates(models, "v1")
    assert not decision.promoted and decision.gate.outcome == "undecided"
    assert current_model(models) is None
    record = json.loads((models / "current.json").read_text())
    assert record["model_version"] is None and record["last_undecided"]["candidate"] == "v1"
    forced = promote_through_gates(models, "v1", force="model.force_promote in radsim.toml")
    assert forced.promoted and current_model(models)["model_version"] == "v1"
    record = json.loads((models / "current.json").read_text())
    assert record["reason"].startswith("forced: by model.force_promote in radsim.toml, overriding undecided")
    assert record["decision"]["state"] == "forced" and record["decision"]["forced_by"].endswith("radsim.toml")
