"""Score labels against a reference.

`score_labels`: per-class F1 per finding (e.g. against synthetic report_truth). Classes are the
CheXpert values: positive (1), negative (0) and uncertain (-1); null counts as its own "not
mentioned" outcome, so a missed or invented mention costs recall or precision.

`score_label_files`: `radsim label-score`, the site-audit scorer (presence P/R/F1 with bootstrap
intervals, radsim.nlp.agreement) against a gold table or a filled-in audit.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from radsim.data_contracts import UsageError
from radsim.data_contracts.atomic import atomic_output
from radsim.data_contracts.tableio import read_input_table
from radsim.data_contracts.vocabulary import default_vocabulary, vocabulary_from_metadata

from .agreement import (
    DEFAULT_BOOTSTRAP,
    UNCERTAIN_POLICIES,
    AgreementReport,
    GoldPair,
    pairs_from_tables,
    score_agreement,
)
from .input_files import ID
from .naming import match_findings

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


def _id_column(table: pa.Table, path: str | Path, wanted: str = ID) -> str:
    hits = [c for c in table.column_names if c.strip().lower() == wanted.strip().lower()]
    if not hits:
        raise UsageError(f"{path}: a labels or gold table needs an {wanted} column (columns: "
                         f"{', '.join(table.column_names[:12])})")
    return hits[0]


def _rows_by_finding(table: pa.Table, path: str | Path, findings: list[str], id_column: str = ID
                     ) -> tuple[list[dict[str, Any]], dict[str, str], list[str]]:
    """Rows as {exam_id, finding: value} in radsim's names; {column: finding} matched; columns not matched."""
    key = _id_column(table, path, id_column)
    matched = match_findings([c for c in table.column_names if c != key], findings)
    other = [c for c in table.column_names if c != key and c not in matched]
    rows = [{"exam_id": None if r[key] is None else str(r[key]), **{f: r[c] for c, f in matched.items()}}
            for r in table.select([key, *matched]).to_pylist()]
    return rows, matched, other


def _read_labels(path: str | Path) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """A labels table (radsim's Parquet, or CSV in radsim's or CheXpert's names) → rows, findings, notes."""
    from .audit import labelled_findings

    table = read_input_table(path)
    if vocabulary_from_metadata(table.schema.metadata) is not None:
        names = labelled_findings(table)
        return table.select(["exam_id", *names]).to_pylist(), names, []
    rows, matched, _ = _rows_by_finding(table, path, list(default_vocabulary().names))
    if not matched:
        raise UsageError(
            f"{path}: no column names a finding (radsim's pleural_effusion or CheXpert's Pleural Effusion)"
        )
    names = [f for f in default_vocabulary().names if f in matched.values()]
    return rows, names, [_naming_note("labels", path, matched, [])]


def _naming_note(what: str, path: str | Path, matched: dict[str, str], other: list[str]) -> str:
    pairs = ", ".join(c if c == f else f"{c!r} → {f}" for c, f in matched.items())
    note = f"{what} {Path(path).name}: columns matched to findings: {pairs or 'none'}"
    return note + (f"; not findings, left out: {', '.join(repr(c) for c in other)}" if other else "")


def _gold_pairs(gold_path: str | Path, pred_rows: list[dict], names: list[str], findings: Sequence[str] | None,
                id_column: str) -> tuple[list[GoldPair], list[str], list[str]]:
    gold = read_input_table(gold_path)
    rows, matched, other = _rows_by_finding(gold, gold_path, names, id_column)
    note = _naming_note("gold", gold_path, matched, other)
    common = [f for f in names if f in matched.values()]
    if not common:
        raise UsageError(f"{gold_path} shares no finding with the labels: {note}. Name gold columns as radsim "
                         "(pleural_effusion) or the CheXpert labeler (Pleural Effusion) does")
    scored = list(findings) if findings else common
    missing = [f for f in scored if f not in common]
    if missing:
        raise UsageError(f"finding(s) {', '.join(missing)} are not in both tables ({note})")
    pairs = pairs_from_tables(pred_rows, rows, scored)
    if not pairs:
        raise UsageError(f"{gold_path} shares no exam_id with the labels (gold ids such as "
                         f"{', '.join(str(r['exam_id']) for r in rows[:3])}; labels ids such as "
                         f"{', '.join(str(r['exam_id']) for r in pred_rows[:3])})")
    return pairs, scored, [note, f"gold: table {Path(gold_path).name}, {gold.num_rows} exam(s)"]


def score_label_files(labels_path: str | Path, gold_path: str | Path, out_dir: str | Path, *,
                      findings: Sequence[str] | None = None, uncertain: str = UNCERTAIN_POLICIES[0],
                      bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = 0,
                      gold_id_column: str = ID) -> tuple[AgreementReport, list[Path]]:
    """`radsim label-score`: a labels table against a gold table or a filled-in audit CSV.

    Either table may name its findings as radsim does (pleural_effusion) or as the CheXpert labeler
    does (Pleural Effusion); the report's notes say which columns were matched to which finding.
    """
    from .audit import is_audit_file, read_audit

    pred_rows, names, notes = _read_labels(labels_path)
    if is_audit_file(gold_path):
        pairs, tally = read_audit(gold_path, {r["exam_id"]: r for r in pred_rows})
        if not pairs:
            raise UsageError(f"{gold_path}: no row is judged yet: write correct (or corrections) in each row")
        notes.append(f"gold: audit {Path(gold_path).name} ({tally['correct']} correct, {tally['wrong']} with "
                     f"corrections, {tally['unsure']} unsure or blank, left out); rows weighted by stratum size")
        scored = list(findings) if findings else list(dict.fromkeys(p.finding for p in pairs))
    else:
        pairs, scored, gold_notes = _gold_pairs(gold_path, pred_rows, names, findings, gold_id_column)
        notes += gold_notes
    try:
        report = score_agreement(pairs, scored, uncertain=uncertain, bootstrap=bootstrap, seed=seed)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    report.notes = notes + report.notes
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in (("agreement.json", report.to_json()), ("agreement.md", report.to_markdown())):
        with atomic_output(out / name) as tmp:
            tmp.write_text(text, encoding="utf-8")
        paths.append(out / name)
    return report, paths
