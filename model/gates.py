"""The gates a trained model passes before it is published or promoted (issue 14, DESIGN §11).

A model is worth serving only if it is measurably better than what a user gets for free. On the
candidate's validation split (its model card) it must:

- have a validation split of at least `min_val_patients` patients; below that nothing can be
  told from noise, and the decision is **undecided** (the current model stays; with no current
  model, nothing trained is published yet);
- not have collapsed: a mean pairwise cosine of its embeddings above `max_mean_cosine` means every
  exam looks like every other (**refused**). Collapse is checked and recorded whatever else is
  decided, forced and undecided included;
- be judged *above chance* on validation P@10, and on the normal-vs-abnormal AUC where that can be
  judged, with the verdicts of radsim.evaluation.judge (true nulls at the split's size, intervals
  that are permutation tests), and clear the untrained encoder with the lower end of its interval
  (**refused** otherwise). A metric "too few to judge" does not gate; with none judged the
  decision is **undecided**;
- when it would replace a current model: not be worse than it by more than its interval (the upper
  end of its interval below the current model's value is worse; a smaller difference is noise).

A force (`--force-promote`, `model.force_promote` in radsim.toml or the environment) overrides a
refusal or an undecided result; the record says it was forced, where the force came from, and
what it overrode.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from radsim.data_contracts.verdicts import ABOVE, BELOW, NOT_DISTINGUISHABLE, TOO_FEW

METRICS = ("precision_at_10", "normal_auc")


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
    forced_by: str | None = None  # where the force came from: --force-promote, radsim.toml, the environment
    collapsed: bool | None = None  # None: the card has no mean pairwise cosine

    @property
    def promote(self) -> bool:
        return self.outcome == "promoted" or self.forced

    @property
    def state(self) -> str:
        """The one word a reader needs: promoted, forced, refused or undecided."""
        return "forced" if self.forced else self.outcome

    def as_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "state": self.state, "reason": self.reason, "forced": self.forced,
                "forced_by": self.forced_by, "collapsed": self.collapsed, "checks": self.checks}


def _num(x: Any) -> float | None:
    try:
        value = float(x)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def decide(candidate: dict[str, Any], untrained: dict[str, Any], current: dict[str, Any] | None = None,
           policy: GatePolicy = GatePolicy(), force: str | None = None) -> GateDecision:
    """The gate decision for a candidate's validation metrics (its card's `metrics`).

    `force` names where a force came from (None: not forced).
    """
    cosine = _num(candidate.get("mean_pairwise_cosine"))
    collapsed = None if cosine is None else cosine > policy.max_mean_cosine
    checks: dict[str, Any] = {"val_patients": candidate.get("n_patients"), "mean_pairwise_cosine": cosine,
                              "collapsed": collapsed}
    decision = _decide(candidate, untrained, current, policy, checks)
    decision.collapsed = collapsed
    if collapsed and decision.outcome != "refused":
        decision.reason += f"; the embedding collapsed (mean pairwise cosine {cosine:.4f} > {policy.max_mean_cosine})"
    if force and decision.outcome != "promoted":
        decision.forced, decision.forced_by = True, force
        decision.reason = f"by {force}, overriding {decision.outcome}: {decision.reason}"
    return decision


def _decide(candidate: dict[str, Any], untrained: dict[str, Any], current: dict[str, Any] | None,
            policy: GatePolicy, checks: dict[str, Any]) -> GateDecision:
    patients = candidate.get("n_patients")
    if patients is None or patients < policy.min_val_patients:
        return GateDecision("undecided", f"validation split of {patients or 0} patients, fewer than the "
                            f"{policy.min_val_patients} needed to tell a model from noise", checks)
    if checks["collapsed"]:
        return GateDecision("refused", f"collapsed embedding: mean pairwise cosine {checks['mean_pairwise_cosine']:.4f}"
                            f" > {policy.max_mean_cosine} (every exam looks alike)", checks)
    failed: list[str] = []
    for name in METRICS:
        failed += _metric_check(name, candidate, untrained, current, checks)
    if not any(name in checks for name in METRICS):
        return GateDecision("undecided", "no validation metric could be judged at this size", checks)
    if failed:
        return GateDecision("refused", "; ".join(failed), checks)
    shown = ", ".join(f"{n} {checks[n]['value']:.3f} [{checks[n]['ci'][0]:.3f}, {checks[n]['ci'][1]:.3f}]"
                      for n in METRICS if n in checks)
    return GateDecision("promoted", f"above chance and the untrained encoder beyond its interval ({shown})"
                        + ("; not worse than the current model" if current else ""), checks)


def verdict_of(metrics: dict[str, Any], name: str) -> str:
    """A metric's verdict from a card; cards written before verdicts are judged from their interval."""
    if metrics.get(f"{name}_verdict"):
        return str(metrics[f"{name}_verdict"])
    ci, chance = metrics.get(f"{name}_ci"), _num(metrics.get(f"{name}_chance"))
    if _num(metrics.get(name)) is None or not ci or chance is None:
        return TOO_FEW
    return ABOVE if float(ci[0]) > chance else BELOW if float(ci[1]) < chance else NOT_DISTINGUISHABLE


def _metric_check(name: str, candidate: dict[str, Any], untrained: dict[str, Any], current: dict[str, Any] | None,
                  checks: dict[str, Any]) -> list[str]:
    """Why one metric fails the gate (empty when it passes or cannot be judged)."""
    verdict = verdict_of(candidate, name)
    if verdict == TOO_FEW:
        checks[f"{name}_too_few"] = candidate.get(f"{name}_note") or "no interval"
        return []
    value, (low, high) = float(candidate[name]), (float(x) for x in candidate[f"{name}_ci"])
    chance, bar = _num(candidate.get(f"{name}_chance")), _num(untrained.get(name))
    checks[name] = {"value": value, "ci": [low, high], "chance": chance, "verdict": verdict,
                    "untrained encoder": bar}
    text = f"{name} {value:.3f} [{low:.3f}, {high:.3f}]"
    failed = [] if verdict == ABOVE else [f"{text} is {verdict} ({chance:.3f})"]
    if bar is not None and not low > bar:
        failed.append(f"{text} does not clear the untrained encoder's {bar:.3f}")
    old = _num((current or {}).get(name))
    if old is not None:
        checks[name]["current"] = old
        if high < old:
            failed.append(f"{text} is worse than the current model's {old:.3f}")
    return failed
