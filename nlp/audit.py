"""A site audit of the labels: a stratified sample for a person to judge, and reading it back.

`export_audit` samples up to N exams per (finding, predicted status) stratum of a labels table and
writes one CSV row per sampled report, with every stratum it was drawn for together: the report,
the values to judge (`to_judge`: "pleural_effusion=1; pneumothorax=0"), their evidence, and blank
`verdict`, `corrections` and `unsure` columns. A reviewer reads the report once and writes
`correct` when every value to judge is right, or lists the wrong ones in `corrections`
("pneumothorax=1; edema=" — empty for not mentioned) and those they cannot judge in `unsure`.

`read_audit` turns the filled CSV into weighted gold pairs: each judged pair of stratum s stands for
size(s) / judged(s) exam-finding pairs, so the scores describe the whole table rather than the
sample; a stratum judged whole is a census, exact. Audits written before one-row-per-report (one row
per pair, with `finding`, `predicted_value` and `true_value`) are still read (radsim.nlp.audit_v1).
The audit quotes report text and raw exam ids: it is a restricted file, kept beside the labels.
"""
from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from radsim.data_contracts import NO_FINDING, UsageError
from radsim.data_contracts.atomic import atomic_output
from radsim.data_contracts.vocabulary import vocabulary_from_metadata

from .agreement import GoldPair, _value, weighted_pairs
from .audit_v1 import is_v1_audit, read_v1_audit
from .reading import open_reports
from .text import decode_report

STRATA = {1: "present", -1: "uncertain", 0: "negated", None: "not_mentioned"}
DEFAULT_PER_STRATUM = 10  # exams sampled per (finding, predicted status) for review
COLUMNS = ["audit_id", "exam_id", "strata", "to_judge", "evidence", "report_text", "verdict", "corrections", "unsure",
           "notes"]
VERDICTS = {"correct": "correct", "c": "correct", "yes": "correct", "y": "correct", "ok": "correct",
            "wrong": "wrong", "w": "wrong", "no": "wrong", "n": "wrong", "incorrect": "wrong",
            "unsure": "unsure", "u": "unsure", "?": "unsure", "": "unsure"}
_STRATUM = re.compile(r"^\s*(?P<name>[^\s(;]+)\s*\((?P<sampled>\d+) of (?P<size>\d+)\)\s*$")


@dataclass
class AuditSummary:
    path: Path
    rows: int  # reports to judge
    pairs: int  # (exam, finding) values to judge
    strata: dict[str, tuple[int, int]]  # stratum -> (size, sampled)

    def lines(self) -> list[str]:
        out = [f"wrote {self.rows} report(s) to judge ({self.pairs} values, {len(self.strata)} strata) in {self.path}"]
        for name, (size, sampled) in sorted(self.strata.items()):
            out.append(f"  {name:<32} {sampled:>4} of {size}")
        out.append("for each report write 'correct' in 'verdict' when every value in 'to_judge' is right; otherwise "
                   "list the wrong ones in 'corrections' (finding=1, 0, -1 or empty) and those you cannot judge in "
                   "'unsure'; then run: radsim label-score LABELS --gold AUDIT.csv --out DIR")
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


def _sample(rows: list[dict], chosen: list[str], per_stratum: int, seed: int, whole: bool
            ) -> tuple[dict[str, list[tuple[str, str]]], dict[str, tuple[int, int]]]:
    """{exam_id: [(finding, stratum)]} for the sampled pairs, and {stratum: (size, sampled)}."""
    rng = np.random.default_rng(seed)
    picked: dict[str, list[tuple[str, str]]] = {}
    strata: dict[str, tuple[int, int]] = {}
    for finding in chosen:
        for value, status in STRATA.items():
            if (value is None or finding == NO_FINDING) and not whole:
                continue
            members = [r["exam_id"] for r in rows if r[finding] == value]
            if not members:
                continue
            take = sorted(rng.choice(len(members), size=min(per_stratum, len(members)), replace=False).tolist())
            name = f"{finding}:{status}"
            strata[name] = (len(members), len(take))
            for i in take:
                picked.setdefault(members[i], []).append((finding, name))
    return picked, strata


def _evidence_line(finding: str, value: Any, ev: dict) -> str:
    shown = "" if value is None else value
    if not ev:
        return f"{finding}={shown} (not mentioned)"
    return (f"{finding}={shown} {ev.get('status')} ({ev.get('certainty') or '-'}): "
            f"\"{ev.get('sentence') or ''}\" [{ev.get('rule')}; trigger {ev.get('trigger')!r}]")


def export_audit(labels_path: str | Path, out_csv: str | Path, *, per_stratum: int = DEFAULT_PER_STRATUM,
                 seed: int = 0,
                 reports_input: str | Path | None = None, findings: Sequence[str] | None = None) -> AuditSummary:
    """Sample up to `per_stratum` exams per (finding, predicted status); write one row per sampled report.

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
    picked, strata = _sample(rows, chosen, per_stratum, seed, reports_input is not None)
    texts = report_texts(reports_input, set(picked)) if reports_input is not None else {}
    out_rows = []
    for row in rows:  # in the labels' order
        pairs = picked.get(row["exam_id"])
        if not pairs:
            continue
        evidence = {e["finding"]: e for e in row["evidence"] or []}
        ordered = sorted(pairs, key=lambda p: chosen.index(p[0]))
        out_rows.append({
            "audit_id": len(out_rows) + 1, "exam_id": row["exam_id"],
            "strata": "; ".join(f"{s} ({strata[s][1]} of {strata[s][0]})" for _, s in ordered),
            "to_judge": "; ".join(f"{f}={'' if row[f] is None else row[f]}" for f, _ in ordered),
            "evidence": "\n".join(_evidence_line(f, row[f], evidence.get(f) or {}) for f, _ in ordered),
            "report_text": texts.get(row["exam_id"], ""), "verdict": "", "corrections": "", "unsure": "", "notes": "",
        })
    out_csv = Path(out_csv)
    with atomic_output(out_csv) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(out_rows)
    return AuditSummary(out_csv, len(out_rows), sum(len(p) for p in picked.values()), strata)


def is_audit_file(path: str | Path) -> bool:
    if Path(path).suffix.lower() != ".csv":
        return False
    with open(path, newline="", encoding="utf-8-sig") as fh:
        header = set(next(csv.reader(fh), []))
    return {"verdict", "corrections", "strata", "to_judge"} <= header or is_v1_audit(header)


def _assignments(text: str, where: str, what: str) -> dict[str, int | None]:
    """"pneumothorax=1; edema=" → {pneumothorax: 1, edema: None}."""
    out: dict[str, int | None] = {}
    for part in re.split(r"[;\n]+", text or ""):
        if not part.strip():
            continue
        name, eq, value = part.partition("=")
        try:
            out[name.strip()] = _value(value) if eq else _value("")
        except ValueError:
            raise UsageError(f"{where}: {what} {part.strip()!r}: the value must be 1, 0, -1 or empty") from None
    return out


def _judged_row(
    row: dict[str, str], where: str, labels: dict[str, dict] | None
) -> list[tuple[str, str, int | None, int | None]]:
    """(finding, stratum, gold, predicted) per judged value of one audit row; [] when the row is not judged."""
    verdict = VERDICTS.get((row.get("verdict") or "").strip().lower())
    if verdict is None:
        raise UsageError(f"{where}: verdict {row.get('verdict')!r} is not correct, wrong or unsure")
    predicted = _assignments(row["to_judge"], where, "to_judge")
    corrections = _assignments(row.get("corrections") or "", where, "correction")
    unsure = {u.strip() for u in re.split(r"[;,\n]+", row.get("unsure") or "") if u.strip()}
    strata = [m.group("name") for m in (_STRATUM.match(s) for s in row["strata"].split(";")) if m]
    for name in (*corrections, *unsure):
        if name not in predicted:
            raise UsageError(f"{where}: {name!r} is not one of the values to judge ({', '.join(predicted)})")
    if verdict == "unsure" and not corrections:
        return []
    if verdict == "wrong" and not corrections:
        raise UsageError(f"{where}: marked wrong, but 'corrections' names no wrong value (finding=value)")
    if len(strata) != len(predicted):
        raise UsageError(f"{where}: 'to_judge' lists {len(predicted)} value(s) but 'strata' {len(strata)}")
    out = []
    for (finding, pred), stratum in zip(predicted.items(), strata):
        if finding in unsure:
            continue
        gold = corrections.get(finding, pred)
        if finding in corrections and gold == pred:
            raise UsageError(f"{where}: correction {finding}={'' if gold is None else gold} equals the prediction")
        if labels is not None:
            have = labels.get(row["exam_id"], {}).get(finding, "missing") if row["exam_id"] in labels else "missing"
            if have == "missing" or _value(have) != pred:
                raise UsageError(f"{where}: exam {row['exam_id']} {finding} is {have} in the labels but {pred} in the "
                                 "audit: score the labels table the audit was exported from")
        out.append((finding, stratum, gold, pred))
    return out


def read_audit(
    path: str | Path, labels: dict[str, dict[str, Any]] | None = None
) -> tuple[list[GoldPair], dict[str, int]]:
    """Judged rows → weighted gold pairs, and counts of verdicts. Checks rows against the labels, if given."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if is_v1_audit(set(reader.fieldnames or [])):
            return read_v1_audit(list(reader), path, labels)
        rows = list(reader)
    tally = {"correct": 0, "wrong": 0, "unsure": 0}
    judged: list[tuple[str, str, str, int | None, int | None]] = []
    sizes: dict[str, int] = {}
    for row in rows:
        where = f"{path}: audit row {row.get('audit_id')}"
        for m in (_STRATUM.match(s) for s in row["strata"].split(";")):
            if m is None:
                raise UsageError(f"{where}: strata {row['strata']!r} is not 'finding:status (n of N); ...'")
            sizes[m.group("name")] = int(m.group("size"))
        values = _judged_row(row, where, labels)
        tally["wrong" if any(g != p for _, _, g, p in values) else "correct" if values else "unsure"] += 1
        judged += [(row["exam_id"], *v) for v in values]
    return weighted_pairs(judged, sizes), tally
