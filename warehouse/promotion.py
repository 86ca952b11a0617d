"""Promotion: a trained model is published or replaces the current one only through the gates (DESIGN §11).

`promote_through_gates` reads the candidate's model card, applies radsim.warehouse.gates (beat
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

from .card import read_card, update_card
from .registry import current_model, promote, record_decision

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
        return f"{'promoted' if self.promoted else self.gate.outcome}: {self.gate.reason}"

    def as_dict(self) -> dict[str, Any]:
        return {"candidate": self.candidate, "current": self.current, "promoted": self.promoted,
                "outcome": self.gate.outcome, "forced": self.gate.forced, "reason": self.reason,
                "checks": self.gate.checks}


def promote_through_gates(models_root: str | Path, candidate: str, *, policy: GatePolicy | None = None,
                          force: bool = False) -> PromotionDecision:
    """Decide on `candidate` (a registered version), promote it if it passes, and record why either way."""
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
