"""How a judged metric and a model decision read, wherever a person reads them.

One wording for report.md, the command's summary, the Prefect artifacts and the training
summary, so that a value "too few to judge" never shows as a number and a forced or collapsed
model never reads as a plain promotion. numpy-free and torch-free.
"""
from __future__ import annotations

import math
from typing import Any

from radsim.data_contracts.verdicts import ABOVE, BELOW, TOO_FEW

NO_DECISION_YET = "not made yet (the gates run when the model is promoted or published)"


def fmt(x: float | None, spec: str = ".3f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def interval_text(value: float | None, low: float | None, high: float | None, verdict: str | None,
                  note: str | None = None, markdown: bool = False) -> str:
    """'0.875 [0.846, 0.899]' (bold in markdown when the verdict is a claim), or 'too few to judge (why)'."""
    if verdict == TOO_FEW or low is None or high is None:
        return f"{TOO_FEW}{f' ({note})' if note else ''}"
    shown = f"**{fmt(value)}**" if markdown and verdict in (ABOVE, BELOW) else fmt(value)
    return f"{shown} [{fmt(low)}, {fmt(high)}]"


def random_text(value: float | None, sd: float | None) -> str:
    return fmt(value) if sd is None else f"{fmt(value)} ± {fmt(sd)}"


def record_line(record: Any) -> str:
    """One line of a judged evaluation record: value [interval] verdict, chance and random; or too few."""
    if record.verdict == TOO_FEW:
        return interval_text(record.value, None, None, TOO_FEW, record.note)
    return (f"{interval_text(record.value, record.ci_low, record.ci_high, record.verdict)}  {record.verdict}  "
            f"(chance {fmt(record.chance_value)}, random {random_text(record.random_value, record.random_sd)})")


def card_metric_line(metrics: dict[str, Any], name: str) -> str:
    """A judged validation metric as a model card keeps it (radsim.model.validation)."""
    if name not in metrics:
        return "n/a"
    ci = metrics.get(f"{name}_ci")
    verdict = metrics.get(f"{name}_verdict")
    if not ci:
        return (interval_text(None, None, None, TOO_FEW, metrics.get(f"{name}_note")) if verdict
                else fmt(metrics.get(name)))
    text = interval_text(metrics.get(name), ci[0], ci[1], verdict or "")
    return f"{text} {verdict or ''} (chance {fmt(metrics.get(f'{name}_chance'))})".replace("  ", " ")


def decision_state(promotion: dict[str, Any] | None) -> str | None:
    """promoted, forced, refused or undecided, from a card's `promotion` record (None when none was made)."""
    if not promotion:
        return None
    return promotion.get("state") or ("forced" if promotion.get("forced") else promotion.get("outcome"))


def decision_text(promotion: dict[str, Any] | None) -> str:
    """'forced: ... ; collapsed' — the gate decision and the collapse check, in one line."""
    state = decision_state(promotion)
    if state is None:
        return "no gate decision recorded (a model published before the gates, or outside them)"
    reason = promotion.get("reason") or ""
    text = reason if reason.startswith(f"{state}:") else f"{state}: {reason}"
    collapsed = promotion.get("collapsed")
    if collapsed and "collapsed" not in text:
        text += "; the embedding collapsed"
    return text


def model_card_markdown(model_version: str, metrics: dict[str, Any], baselines: dict[str, Any],
                        promotion: dict[str, Any] | None, note: str = "") -> str:
    """A model card's validation metrics, baselines, n, collapse check and gate decision, as markdown."""
    untrained, rand = baselines.get("untrained_encoder") or {}, baselines.get("random_embedding") or {}
    rows = []
    for name, label in (("precision_at_10", "P@10"), ("normal_auc", "normal-vs-abnormal AUC (kNN, k=10)")):
        ci, verdict = metrics.get(f"{name}_ci"), metrics.get(f"{name}_verdict")
        value = interval_text(metrics.get(name), ci[0], ci[1], verdict, markdown=True) if ci else \
            interval_text(None, None, None, TOO_FEW, metrics.get(f"{name}_note")) if verdict else fmt(metrics.get(name))
        rows.append(f"| {label} | {metrics.get(f'{name}_queries', '?')} ({metrics.get(f'{name}_patients', '?')}) | "
                    f"{value} | {verdict or ''} | {fmt(metrics.get(f'{name}_chance'))} | {fmt(untrained.get(name))} | "
                    f"{random_text(rand.get(name), rand.get(f'{name}_sd'))} |")
    cosine = metrics.get("mean_pairwise_cosine")
    collapsed = (promotion or {}).get("collapsed")
    lines = [
        f"# {model_version}",
        "",
        *([note, ""] if note else []),
        f"Validation split: {metrics.get('n_items', '?')} labelled frontal films of {metrics.get('n_patients', '?')} "
        "patients.",
        "",
        "| metric | exams (patients) | value [95% CI] | verdict | chance | untrained encoder | random embedding |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"- Mean pairwise cosine of the validation embeddings: {fmt(cosine, '.4f')}"
        + (" — **collapsed**" if collapsed else " (near 1 means collapse)"),
        "- Gate decision: "
        + (decision_text(promotion) if promotion else NO_DECISION_YET),
        "",
        "Not a medical device.",
    ]
    return "\n".join(lines)
