"""The gates a trained model passes before it is published or promoted (issue 14, DESIGN §11).

A model is worth serving only if it is measurably better than what a user gets for free. On the
candidate's validation split (its model card) it must:

- have a validation split of at least `min_val_patients` patients; below that nothing can be
  told from noise, and the decision is **undecided** (the current model stays; with no current
  model, nothing trained is published yet);
- not have collapsed: a mean pairwise cosine of its embeddings above `max_mean_cosine` means every
  exam looks like every other (**refused**);
- beat chance and the untrained encoder by more than its interval: the lower end of the 95%
  interval of validation P@10 above both the chance level and the untrained encoder's P@10, and
  likewise for the normal-vs-abnormal AUC (above 0.5 and the untrained encoder's AUC) when the
  split has normal and abnormal films (**refused** otherwise);
- when it would replace a current model: not be worse than it by more than its interval (the upper
  end of its interval below the current model's value is worse; a smaller difference is noise).

`--force-promote` overrides a refusal or an undecided result, and says so in the record.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

METRICS = ("precision_at_10", "normal_auc")
CHANCE = {"precision_at_10": "precision_at_10_chance", "normal_auc": "normal_auc_chance"}


@dataclass(frozen=True)
class GatePolicy:
    min_val_patients: int = 30
    max_mean_cosine: float = 0.9


@dataclass
class GateDecision:
    outcome: str  # promoted | refused | undecided
    reason: str
    checks: dict[str, Any] = field(default_factory=dict)
    forced: bool = False

    @property
    def promote(self) -> bool:
        return self.outcome == "promoted" or self.forced

    def as_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "reason": self.reason, "forced": self.forced, "checks": self.checks}


def _num(x: Any) -> float | None:
    try:
        value = float(x)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def decide(candidate: dict[str, Any], untrained: dict[str, Any], current: dict[str, Any] | None = None,
           policy: GatePolicy = GatePolicy(), force: bool = False) -> GateDecision:
    """The gate decision for a candidate's validation metrics (its card's `metrics`)."""
    checks: dict[str, Any] = {"val_patients": candidate.get("n_patients"),
                              "mean_pairwise_cosine": candidate.get("mean_pairwise_cosine")}
    decision = _decide(candidate, untrained, current, policy, checks)
    if force and decision.outcome != "promoted":
        decision.forced = True
        decision.reason = f"promoted by --force-promote, overriding: {decision.outcome}: {decision.reason}"
    return decision


def _decide(candidate: dict[str, Any], untrained: dict[str, Any], current: dict[str, Any] | None,
            policy: GatePolicy, checks: dict[str, Any]) -> GateDecision:
    patients = candidate.get("n_patients")
    if patients is None or patients < policy.min_val_patients:
        return GateDecision("undecided", f"validation split of {patients or 0} patients, fewer than the "
                            f"{policy.min_val_patients} needed to tell a model from noise", checks)
    cosine = _num(candidate.get("mean_pairwise_cosine"))
    if cosine is not None and cosine > policy.max_mean_cosine:
        return GateDecision("refused", f"collapsed embedding: mean pairwise cosine {cosine:.3f} > "
                            f"{policy.max_mean_cosine} (every exam looks alike)", checks)
    failed: list[str] = []
    for name in METRICS:
        value, ci = _num(candidate.get(name)), candidate.get(f"{name}_ci")
        if value is None or not ci:
            continue  # e.g. no normal film in the split: that metric cannot gate
        low, high = float(ci[0]), float(ci[1])
        bars = {"chance": _num(candidate.get(CHANCE[name])), "untrained encoder": _num(untrained.get(name))}
        checks[name] = {"value": value, "ci": [low, high], **{k: v for k, v in bars.items()}}
        for what, bar in bars.items():
            if bar is not None and not low > bar:
                failed.append(f"{name} {value:.3f} [{low:.3f}, {high:.3f}] does not clear {what} {bar:.3f}")
        old = _num((current or {}).get(name))
        if old is not None:
            checks[name]["current"] = old
            if high < old:
                failed.append(f"{name} {value:.3f} [{low:.3f}, {high:.3f}] is worse than the current model's {old:.3f}")
    if not any(name in checks for name in METRICS):
        return GateDecision("undecided", "no validation metric with an interval to judge the model by", checks)
    if failed:
        return GateDecision("refused", "; ".join(failed), checks)
    shown = ", ".join(f"{n} {checks[n]['value']:.3f} [{checks[n]['ci'][0]:.3f}, {checks[n]['ci'][1]:.3f}]"
                      for n in METRICS if n in checks)
    return GateDecision("promoted", f"beats chance and the untrained encoder beyond its interval ({shown})"
                        + ("; not worse than the current model" if current else ""), checks)
