"""Audits exported before one-row-per-report: one row per (exam, finding) with `finding`,
`predicted_value`, `verdict` and `true_value`. Still read, so a site's judged audit is never lost."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from radsim.data_contracts import UsageError

from .agreement import GoldPair, _value, weighted_pairs

V1_COLUMNS = {"verdict", "true_value", "stratum", "stratum_size", "finding", "predicted_value"}
VERDICTS = {"correct": "correct", "c": "correct", "yes": "correct", "y": "correct", "ok": "correct",
            "wrong": "wrong", "w": "wrong", "no": "wrong", "n": "wrong", "incorrect": "wrong",
            "unsure": "unsure", "u": "unsure", "?": "unsure", "": "unsure"}


def is_v1_audit(header: set[str]) -> bool:
    return V1_COLUMNS <= header


def _check_prediction(row: dict[str, str], where: str, predicted: int | None, labels: dict[str, dict] | None) -> None:
    if labels is None:
        return
    have = labels.get(row["exam_id"], {}).get(row["finding"], "missing") if row["exam_id"] in labels else "missing"
    if have == "missing" or _value(have) != predicted:
        raise UsageError(f"{where}: exam {row['exam_id']} {row['finding']} is {have} in the labels but "
                         f"{predicted} in the audit: score the labels table the audit was exported from")


def read_v1_audit(rows: list[dict[str, str]], path: str | Path,
                  labels: dict[str, dict[str, Any]] | None) -> tuple[list[GoldPair], dict[str, int]]:
    """Judged rows → weighted gold pairs, and counts of verdicts (per row, i.e. per pair)."""
    tally = {"correct": 0, "wrong": 0, "unsure": 0}
    judged: list[tuple[str, str, str, int | None, int | None]] = []
    sizes: dict[str, int] = {}
    for row in rows:
        where = f"{path}: audit row {row.get('audit_id')}"
        verdict = VERDICTS.get((row.get("verdict") or "").strip().lower())
        if verdict is None:
            raise UsageError(f"{where}: verdict {row.get('verdict')!r} is not correct, wrong or unsure")
        tally[verdict] += 1
        sizes[row["stratum"]] = int(row["stratum_size"])
        if verdict == "unsure":
            continue
        predicted = _value(row["predicted_value"])
        _check_prediction(row, where, predicted, labels)
        gold = predicted
        if verdict == "wrong":
            try:
                gold = _value(row.get("true_value"))
            except ValueError:
                raise UsageError(f"{where}: true_value {row.get('true_value')!r} must be 1, 0, -1 or empty") from None
            if gold == predicted:
                raise UsageError(f"{where}: marked wrong, but its true_value equals the prediction ({predicted})")
        judged.append((row["exam_id"], row["finding"], row["stratum"], gold, predicted))
    return weighted_pairs(judged, sizes), tally
