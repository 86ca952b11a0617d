"""Promotion: a trained model is published or replaces the current one only through the gates (DESIGN §11).

`promote_through_gates` reads the candidate's model card, applies radsim.model.gates (beat
chance and the untrained encoder beyond the intervals, no collapse, a validation split big enough,
not worse than the current model beyond its interval) and records the decision and its reason
everywhere a user looks: `models/current.json` (as the promotion, or under "last_refused" /
"last_undecided"), the candidate's `model_card.json` ("promotion") and the run summary.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from radsim.warehouse.card import read_card, update_card
from radsim.warehouse.registry import current_model, promote, record_decision

from .gates import GateDecision, GatePolicy, decide


@dataclass
class PromotionDecision:
    candidate: str
    current: str | None
    gate: GateDecision

    @property
    def promoted(self) -> bool:
        return self.gate.promote

    @property
    def reason(self) -> str:
        """One line that names the state (promoted, forced, refused, undecided) and, when so, the collapse."""
        return f"{self.gate.state}: {self.gate.reason}"

    def as_dict(self) -> dict[str, Any]:
        return {**self.gate.as_dict(), "candidate": self.candidate, "current": self.current,
                "promoted": self.promoted, "reason": self.reason}


def promote_through_gates(models_root: str | Path, candidate: str, *, policy: GatePolicy | None = None,
                          force: str | None = None) -> PromotionDecision:
    """Decide on `candidate` (a registered version), promote it if it passes, and record why either way.

    `force` names where a force came from (radsim.model.gates.decide); None: no force.
    """
    policy = policy or GatePolicy()
    models_root = Path(models_root)
    record = current_model(models_root)
    card = read_card(models_root / candidate)
    untrained = (card.baseline_metrics or {}).get("untrained_encoder") or {}
    gate = decide(card.metrics or {}, untrained, (record or {}).get("metrics"), policy, force)
    decision = PromotionDecision(candidate, record["model_version"] if record else None, gate)
    update_card(models_root / candidate,
                promotion={**decision.as_dict(), "decided_at": datetime.now(UTC).isoformat(timespec="seconds")})
    if decision.promoted:
        previous = {k: record.get(k) for k in ("model_version", "promoted_at", "metrics", "reason")} if record else None
        promote(models_root, candidate, reason=decision.reason, previous=previous, decision=decision.as_dict())
    else:
        record_decision(models_root, gate.outcome, decision.as_dict())
    return decision


def publication_decision(model_dir: str | Path, published_dir: str | Path, *, force: str | None = None,
                         policy: GatePolicy | None = None) -> GateDecision:
    """May `radsim publish` make this model the published table's current version? The gates decide.

    The candidate is judged on its card's validation metrics against its untrained encoder and,
    when another model's version is current there, that model's card. The model folder is not
    written to (it may be read-only): the publication carries the decision in the published
    table's model card, its publish record and versions.parquet.
    """
    from radsim.warehouse.published.read import current_version, open_version

    card = read_card(model_dir)
    current = current_version(published_dir) if Path(published_dir).exists() else None
    other = None
    if current is not None and current != card.model_version:
        other = (open_version(published_dir, current, verify="quick").model_card() or {}).get("metrics")
    untrained = (card.baseline_metrics or {}).get("untrained_encoder") or {}
    return decide(card.metrics or {}, untrained, other, policy or GatePolicy(), force)
