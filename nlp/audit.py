"""A site audit of the labels: a stratified sample for a person to judge, and reading it back.

`export_audit` samples up to N exams per (finding, predicted status) stratum of a labels table and
writes them as CSV with the evidence sentence and blank `verdict` / `true_value` columns. A reviewer
fills in `verdict` (correct, wrong or unsure) and, for a wrong row, `true_value` (1, 0, -1, or empty
for "not mentioned"). `read_audit` turns the filled CSV into weighted gold pairs: each judged row
stands for `stratum_size / judged rows of its stratum` exam-finding pairs, so the scores describe
the whole table rather than the sample. The audit quotes report text and raw exam ids: it is a
restricted file, kept beside the labels.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow.parquet as pq

from radsim.data_contracts import NO_FINDING, UsageError
from radsim.data_contracts.atomic import atomic_output
from radsim.data_contracts.vocabulary import vocabulary_from_metadata

from .agreement import GoldPair, _value
from .reading import open_reports
from .text import decode_report

STRATA = {1: "present", -1: "uncertain", 0: "negated", None: "not_mentioned"}
COLUMNS = ["audit_id", "stratum", "stratum_size", "sampled", "exam_id", "finding", "predicted_value",
           "predicted_status", "sentence", "trigger", "rule", "report_text", "verdict", "true_value", "notes"]
VERDICTS = {"correct": "correct", "c": "correct", "yes": "correct", "y": "correct", "ok": "correct",
            "wrong": "wrong", "w": "wrong", "no": "wrong", "n": "wrong", "incorrect": "wrong",
            "unsure": "unsure", "u": "unsure", "?": "unsure", "": "unsure"}


@dataclass
class AuditSummary:
    path: Path
    rows: int
    strata: dict[str, tuple[int, int]]  # stratum -> (size, sampled)

    def lines(self) -> list[str]:
        out = [f"wrote {self.rows} row(s) to judge in {self.path} ({len(self.strata)} strata)"]
        for name, (size, sampled) in sorted(self.strata.items()):
            out.append(f"  {name:<32} {sampled:>4} of {size}")
        out.append("fill in 'verdict' (correct / wrong / unsure) and, where wrong, 'true_value' (1, 0, -1 or empty), "
                   "then run: radsim label-score LABELS --gold AUDIT.csv --out DIR")
        return out


def labelled_findings(table: Any) -> list[str]:
    names = vocabulary_from_metadata(table.schema.metadata)
    if names is None:
        raise UsageError("the labels table records no vocabulary (radsim.vocabulary.findings): is it a labels table?")
    return names


def report_texts(reports_input: str | Path, exam_ids: set[str]) -> dict[str, str]:
    """The report text of each wanted exam, streamed from a report input (any `radsim label` INPUT)."""
    out: dict[str, str] = {}
    for rec in open_reports(reports_input).records():
        if rec.exam_id in exam_ids and rec.exam_id not in out:
            out[rec.exam_id] = decode_report(rec.text, max_chars=10**9).text or ""
    return out


def export_audit(labels_path: str | Path, out_csv: str | Path, *, per_stratum: int = 10, seed: int = 0,
                 reports_input: str | Path | None = None, findings: Sequence[str] | None = None) -> AuditSummary:
    """Sample up to `per_stratum` exams per (finding, predicted status) of a labels table.

    With `reports_input` (the labelled reports), rows carry the whole report, and the not-mentioned
    strata and no_finding are sampled too: a reviewer needs the whole report to see a missed mention.
    """
    if per_stratum < 1:
        raise UsageError(f"--per-stratum must be at least 1 (got {per_stratum})")
    table = pq.read_table(labels_path)
    names = labelled_findings(table)
    chosen = list(findings) if findings else names
    unknown = [f for f in chosen if f not in names]
    if unknown:
        raise UsageError(f"finding(s) {', '.join(unknown)} are not in the labels table ({', '.join(names)})")
    rows = table.select(["exam_id", *chosen, "evidence"]).to_pylist()
    rng = np.random.default_rng(seed)
    out_rows: list[dict[str, Any]] = []
    strata: dict[str, tuple[int, int]] = {}
    whole = reports_input is not None
    for finding in chosen:
        for value, status in STRATA.items():
            if (value is None or finding == NO_FINDING) and not whole:
                continue
            members = [r for r in rows if r[finding] == value]
            if not members:
                continue
            take = sorted(rng.choice(len(members), size=min(per_stratum, len(members)), replace=False).tolist())
            name = f"{finding}:{status}"
            strata[name] = (len(members), len(take))
            for i in take:
                r = members[i]
                ev = next((e for e in (r["evidence"] or []) if e["finding"] == finding), None) or {}
                out_rows.append({
                    "stratum": name, "stratum_size": len(members), "sampled": len(take), "exam_id": r["exam_id"],
                    "finding": finding, "predicted_value": "" if value is None else value,
                    "predicted_status": ev.get("status") or status, "sentence": ev.get("sentence") or "",
                    "trigger": ev.get("trigger") or "", "rule": ev.get("rule") or "",
                    "report_text": "", "verdict": "", "true_value": "", "notes": "",
                })
    if whole:
        texts = report_texts(reports_input, {r["exam_id"] for r in out_rows})
        for row in out_rows:
            row["report_text"] = texts.get(row["exam_id"], "")
    for k, row in enumerate(out_rows, start=1):
        row["audit_id"] = k
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(out_csv) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(out_rows)
    return AuditSummary(out_csv, len(out_rows), strata)


def is_audit_file(path: str | Path) -> bool:
    if Path(path).suffix.lower() != ".csv":
        return False
    with open(path, newline="", encoding="utf-8-sig") as fh:
        header = next(csv.reader(fh), [])
    return {"verdict", "true_value", "stratum", "stratum_size"} <= set(header)


def read_audit(path: str | Path, labels: dict[str, dict[str, Any]] | None = None) -> tuple[list[GoldPair], dict[str, int]]:
    """Judged rows → weighted gold pairs, and counts of verdicts. Checks rows against the labels, if given."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    judged: list[tuple[dict[str, str], int | None]] = []
    tally = {"correct": 0, "wrong": 0, "unsure": 0}
    for row in rows:
        raw = (row.get("verdict") or "").strip().lower()
        verdict = VERDICTS.get(raw)
        where = f"{path}: audit row {row.get('audit_id')}"
        if verdict is None:
            raise UsageError(f"{where}: verdict {row.get('verdict')!r} is not correct, wrong or unsure")
        tally[verdict] += 1
        if verdict == "unsure":
            continue
        predicted = _value(row["predicted_value"])
        if labels is not None:
            have = labels.get(row["exam_id"], {}).get(row["finding"], "missing") if row["exam_id"] in labels else "missing"
            if have == "missing" or _value(have) != predicted:
                raise UsageError(f"{where}: exam {row['exam_id']} {row['finding']} is {have} in the labels but "
                                 f"{predicted} in the audit: score the labels table the audit was exported from")
        if verdict == "correct":
            gold = predicted
        else:
            try:
                gold = _value(row.get("true_value"))
            except ValueError:
                raise UsageError(f"{where}: true_value {row.get('true_value')!r} must be 1, 0, -1 or empty") from None
            if gold == predicted:
                raise UsageError(f"{where}: marked wrong, but its true_value equals the prediction ({predicted})")
        judged.append((row, gold))
    per_stratum: dict[str, int] = {}
    for row, _ in judged:
        per_stratum[row["stratum"]] = per_stratum.get(row["stratum"], 0) + 1
    pairs = [GoldPair(row["exam_id"], row["finding"], gold, _value(row["predicted_value"]),
                      weight=int(row["stratum_size"]) / per_stratum[row["stratum"]], stratum=row["stratum"])
             for row, gold in judged]
    return pairs, tally
