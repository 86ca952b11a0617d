"""Score labels against a reference.

`score_labels`: per-class F1 per finding (e.g. against synthetic report_truth). Classes are the
CheXpert values: positive (1), negative (0) and uncertain (-1); null counts as its own "not
mentioned" outcome, so a missed or invented mention costs recall or precision.

`score_label_files`: `radsim label-score`, the site-audit scorer (presence P/R/F1 with bootstrap
intervals, radsim.nlp.agreement) against a gold table or a filled-in audit.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from radsim.data_contracts import UsageError
from radsim.data_contracts.atomic import atomic_output
from radsim.data_contracts.tableio import read_input_table

from .agreement import AgreementReport, pairs_from_tables, score_agreement

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


def score_label_files(labels_path: str | Path, gold_path: str | Path, out_dir: str | Path, *,
                      findings: Sequence[str] | None = None, uncertain: str = "exclude", bootstrap: int = 1000,
                      seed: int = 0) -> tuple[AgreementReport, list[Path]]:
    """`radsim label-score`: a labels table against a gold table or a filled-in audit CSV."""
    from .audit import is_audit_file, labelled_findings, read_audit

    predicted = pq.read_table(labels_path)
    names = labelled_findings(predicted)
    pred_rows = predicted.select(["exam_id", *names]).to_pylist()
    notes: list[str] = []
    if is_audit_file(gold_path):
        pairs, tally = read_audit(gold_path, {r["exam_id"]: r for r in pred_rows})
        if not pairs:
            raise UsageError(f"{gold_path}: no row has a verdict yet: write correct, wrong or unsure in 'verdict'")
        notes.append(f"gold: audit {Path(gold_path).name} ({tally['correct']} correct, {tally['wrong']} wrong, "
                     f"{tally['unsure']} unsure or blank, left out); rows weighted by stratum size")
        scored = list(findings) if findings else list(dict.fromkeys(p.finding for p in pairs))
    else:
        gold = read_input_table(gold_path)
        if "exam_id" not in gold.column_names:
            raise UsageError(f"{gold_path}: a gold table needs an exam_id column")
        common = [f for f in names if f in gold.column_names]
        scored = list(findings) if findings else common
        missing = [f for f in scored if f not in common]
        if missing:
            raise UsageError(f"finding(s) {', '.join(missing)} are not in both tables")
        pairs = pairs_from_tables(pred_rows, gold.select(["exam_id", *scored]).to_pylist(), scored)
        notes.append(f"gold: table {Path(gold_path).name}, {gold.num_rows} exam(s)")
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
