"""Promotion rule: a retrained model replaces the current one only when it is not worse (DESIGN §11).

"Not worse" means validation P@10 and normal AUC each at least the current model's (minus
`tolerance`). The comparison and the reason go into models/current.json either way: a refused
candidate is recorded under "last_refused", so an operator can see why the old model still serves.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from radsim.data_contracts.atomic import atomic_output
from radsim.model.registry import CURRENT_FILE, current_model, promote, read_card

METRICS = ("precision_at_10", "normal_auc")


@dataclass
class PromotionDecision:
    candidate: str
    current: str | None
    promoted: bool
    reason: str
    comparison: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"candidate": self.candidate, "current": self.current, "promoted": self.promoted,
                "reason": self.reason, "comparison": self.comparison}


def compare(candidate: dict[str, Any], current: dict[str, Any], tolerance: float = 0.0) -> tuple[bool, str, dict]:
    """(not worse?, reason, per-metric comparison) on the validation metrics in METRICS."""
    comparison: dict[str, dict[str, Any]] = {}
    worse: list[str] = []
    for name in METRICS:
        new, old = candidate.get(name), current.get(name)
        comparison[name] = {"candidate": new, "current": old}
        if old is None:
            continue  # nothing to compare against
        if new is None or new < old - tolerance:
            worse.append(f"{name} {'n/a' if new is None else f'{new:.3f}'} < current {old:.3f}")
    if worse:
        return False, "not promoted: worse on validation: " + "; ".join(worse), comparison
    shown = ", ".join(f"{n} {comparison[n]['candidate']:.3f} vs {comparison[n]['current']:.3f}" for n in METRICS
                      if comparison[n]["candidate"] is not None and comparison[n]["current"] is not None)
    return True, "promoted: not worse on validation" + (f" ({shown})" if shown else ""), comparison


def promote_if_not_worse(models_root: str | Path, candidate: str, *, tolerance: float = 0.0) -> PromotionDecision:
    """Promote `candidate` (a registered version) if it beats or equals current.json's metrics."""
    models_root = Path(models_root)
    record = current_model(models_root)
    metrics = read_card(models_root / candidate).metrics or {}
    if record is None:
        promote(models_root, candidate, reason="first model of this warehouse")
        return PromotionDecision(candidate, None, True, "first model of this warehouse")
    ok, reason, comparison = compare(metrics, record.get("metrics") or {}, tolerance)
    decision = PromotionDecision(candidate, record["model_version"], ok, reason, comparison)
    previous = {k: record.get(k) for k in ("model_version", "promoted_at", "metrics", "reason")}
    if ok:
        promote(models_root, candidate, reason=reason, previous={**previous, "comparison": comparison})
    else:
        record = dict(record)
        record["last_refused"] = {**decision.as_dict(),
                                  "decided_at": datetime.now(UTC).isoformat(timespec="seconds")}
        with atomic_output(models_root / CURRENT_FILE) as tmp:
            tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return decision
