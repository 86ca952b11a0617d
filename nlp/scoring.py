"""Score labels against a reference (e.g. synthetic report_truth): per-class F1 per finding.

Classes are the CheXpert values: positive (1), negative (0) and uncertain (-1); null counts as
its own "not mentioned" outcome, so a missed or invented mention costs recall or precision.
"""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

CLASSES = {"positive": 1, "negative": 0, "uncertain": -1}


@dataclass
class F1Report:
    per_finding: dict[str, dict[str, float | None]]  # finding -> class -> F1 (None: class absent in both)
    macro: dict[str, float]  # class -> mean F1 over findings where the class occurs

    def lines(self) -> list[str]:
        out = ["macro-F1: " + ", ".join(f"{k} {v:.4f}" for k, v in self.macro.items())]
        for f, per in self.per_finding.items():
            out.append(f"  {f}: " + ", ".join(f"{k} {'-' if v is None else f'{v:.3f}'}" for k, v in per.items()))
        return out


def _f1(pred: list, truth: list, value: int) -> float | None:
    tp = sum(1 for p, t in zip(pred, truth) if p == value and t == value)
    fp = sum(1 for p, t in zip(pred, truth) if p == value and t != value)
    fn = sum(1 for p, t in zip(pred, truth) if p != value and t == value)
    if tp + fp + fn == 0:
        return None
    return 2 * tp / (2 * tp + fp + fn)


def score_labels(predicted: pa.Table, truth: pa.Table, findings: list[str] | tuple[str, ...]) -> F1Report:
    """Join on exam_id (exams in both tables) and compute F1 per class and finding, then macro averages."""
    truth_rows = {r["exam_id"]: r for r in truth.select(["exam_id", *findings]).to_pylist()}
    pred_rows = [r for r in predicted.select(["exam_id", *findings]).to_pylist() if r["exam_id"] in truth_rows]
    if not pred_rows:
        raise ValueError("no exam_id in common between predicted labels and truth")
    per: dict[str, dict[str, float | None]] = {}
    for f in findings:
        p = [r[f] for r in pred_rows]
        t = [truth_rows[r["exam_id"]][f] for r in pred_rows]
        per[f] = {name: _f1(p, t, v) for name, v in CLASSES.items()}
    macro = {}
    for name in CLASSES:
        vals = [per[f][name] for f in findings if per[f][name] is not None]
        macro[name] = sum(vals) / len(vals) if vals else float("nan")
    return F1Report(per, macro)
