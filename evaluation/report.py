"""`radsim evaluate`: every DESIGN §9 metric of a published version, as evaluation.json + report.md + PNGs.

What is evaluated:
- rows of one split (test by default) that have labels: the published report-derived
  labels, or `truth` (a labels-contract table keyed by raw exam_id, hashed through the
  key), which replaces them; rows without a truth row are left out and counted;
- headline metrics use one image per exam (its first frontal image, else its first), so
  an exam's lateral never retrieves its own frontal;
- the breakdown by view (PA, AP, LATERAL) evaluates each view's images among themselves
  and is recorded with split `<split>/view=<VIEW>`.

numpy, pyarrow, scikit-learn and matplotlib only: no torch.
"""
from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from radsim.data_contracts import IdKeyer, UsageError
from radsim.data_contracts.atomic import write_json_atomic

from radsim.warehouse.published import open_version

from .config import DEFAULT_MAX_QUERIES
from .display import decision_state, decision_text, record_line
from .evalset import FRONTAL, VIEWS, EvalSet, inputs_fingerprint, load_eval_set, patient_keys, truth_labels
from .evaluate import EvaluationOptions, evaluate_embeddings
from .judge import DEFAULT_MINIMUM, MinimumSizes
from .neighbours import random_embeddings
from .records import MetricRecord, records_to_table
from .report_markdown import HEADLINE, render_markdown
from .retrieval import retrieval_scores

__all__ = ["FRONTAL", "VIEWS", "EvalSet", "load_eval_set", "patient_keys", "truth_labels"]  # moved; still importable here

CURVE_KS = (1, 2, 3, 5, 10, 15, 20, 30, 50, 100)
EVALUATION_FILE = "evaluation.json"
REPORT_FILE = "report.md"
INPUTS_FILE = "evaluation.inputs.json"  # what the report was computed from, so an unchanged one is kept


def _queries(n: int, max_queries: int | None, seed: int) -> np.ndarray | None:
    if not max_queries or n <= max_queries:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=max_queries, replace=False))


def evaluate_set(data: EvalSet, split_name: str, *, seed: int = 0, max_queries: int | None = DEFAULT_MAX_QUERIES,
                 with_clustering: bool = True, minimum: MinimumSizes = DEFAULT_MINIMUM) -> list[MetricRecord]:
    """evaluation.evaluate_embeddings on one subset; [] when it has fewer than 3 items."""
    if len(data) < 3:
        return []
    normal = data.findings.index("no_finding") if "no_finding" in data.findings else None
    return evaluate_embeddings(data.embeddings, data.labels, model_version=data.model_version, split=split_name,
                               finding_names=data.findings, normal_index=normal, groups=data.interval_groups,
                               queries=_queries(len(data), max_queries, seed),
                               options=EvaluationOptions(seed=seed, with_clustering=with_clustering, minimum=minimum))


def precision_curve(data: EvalSet, *, seed: int = 0, max_queries: int | None = DEFAULT_MAX_QUERIES) -> dict[str, Any]:
    """P@k for k in CURVE_KS (up to n-1): model, random embeddings and chance."""
    ks = tuple(k for k in CURVE_KS if k <= len(data) - 1)
    if not ks:
        return {"k": [], "model": [], "random": [], "chance": []}
    kw = dict(ks=ks, ndcg_ks=(), finding_k=None, normal_index=None, with_map=False,
              queries=_queries(len(data), max_queries, seed))
    s = retrieval_scores(data.embeddings, data.labels, **kw)
    r = retrieval_scores(random_embeddings(*data.embeddings.shape, seed), data.labels, **kw)
    return {"k": list(ks), "model": [s.precision_at_k[k] for k in ks], "random": [r.precision_at_k[k] for k in ks],
            "chance": [s.precision_at_k_chance[k] for k in ks]}


@dataclass
class EvaluationResult:
    model_version: str
    out_dir: Path
    records: list[MetricRecord]
    files: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    n_items: int = 0
    seconds: float = 0.0
    decision: str | None = None  # the model's gate decision and collapse, as one line
    reused: bool = False  # the report already there was kept: its inputs had not changed

    def record(self, metric: str, k: int | None = None, split: str | None = None) -> MetricRecord | None:
        split = split or (self.records[0].split if self.records else None)
        for r in self.records:
            if r.metric == metric and (k is None or r.k == k) and r.split == split:
                return r
        return None

    def headline(self) -> list[str]:
        """One line per headline metric: value [95% interval], verdict, chance and random; or too few to judge."""
        lines = []
        for metric, k, label in HEADLINE:
            r = self.record(metric, k)
            if r is not None:
                lines.append(f"{label:<22} {record_line(r)}")
        return lines

    def summary(self) -> str:
        return "\n".join([f"evaluate: model version {self.model_version}, {self.n_items} exams; report in {self.out_dir}",
                          *(["  model decision: " + self.decision] if self.decision else []),
                          *("  " + line for line in self.headline()), *("  note: " + n for n in self.notes)])


def write_records(records: Sequence[MetricRecord], path: Path) -> Path:
    records_to_table(records)  # validate against the evaluation contract before writing
    return write_json_atomic(path, [r.to_dict() for r in records])


def run_evaluation(published_dir: str | Path, out_dir: str | Path, *, model_version: str | None = None,
                   truth: str | Path | pa.Table | None = None, keyer: IdKeyer | None = None,
                   shards: str | Path | None = None, split: str = "test", seed: int = 0,
                   max_queries: int | None = DEFAULT_MAX_QUERIES, plots: bool = True,
                   minimum: MinimumSizes = DEFAULT_MINIMUM, reuse: bool = False) -> EvaluationResult:
    """Evaluate a published version and write evaluation.json, report.md and the PNG plots in `out_dir`.

    `minimum` (radsim.evaluation.judge) sets the sizes below which a metric is too few to judge;
    the calibration benchmark lowers it to measure them. With `reuse` (the scheduled pipeline), a
    report whose inputs are unchanged (radsim.evaluation.evalset.inputs_fingerprint: the model,
    its decision, the scored rows, their labels and vectors, the settings) is kept as it is.
    """
    t0 = time.perf_counter()
    version = open_version(published_dir, model_version, verify="full")
    data = load_eval_set(version, split=split, truth=truth, keyer=keyer, shards=shards)
    out = _report_folder(out_dir)
    head = data.subset(data.one_per_exam())
    if len(head) < 3:
        raise UsageError(f"split {split!r} of model version {version.model_version} has {len(head)} labelled exam(s); "
                         "need at least 3 to evaluate (try --split all)")
    promotion = version.model_card().get("promotion")
    fingerprint = inputs_fingerprint(data, split, {"seed": seed, "max_queries": max_queries, "minimum": minimum.__dict__,
                                                   "decision": decision_text(promotion) if promotion else None})
    if reuse and (kept := _unchanged_report(out, fingerprint, version.model_version, len(head))) is not None:
        return kept
    records, view_counts = _all_records(data, head, split, seed, max_queries, minimum, promotion)
    notes = [f"retrieval metrics use {max_queries} seeded queries of {len(head)} (the gallery is all exams)"] \
        if max_queries and len(head) > max_queries else []
    result = EvaluationResult(version.model_version, out, records, notes=notes, n_items=len(head),
                              decision=decision_text(promotion) if promotion else None)
    result.files["evaluation"] = write_records(records, out / EVALUATION_FILE)
    pictures = _plots(result, head, version.model_version, shards, seed, max_queries) if plots else {}
    result.files.update({p.stem: p for p in pictures.values()})
    report = out / REPORT_FILE
    report.write_text(render_markdown(result, head, version, view_counts, pictures, split), encoding="utf-8")
    result.files["report"] = report
    write_json_atomic(out / INPUTS_FILE, {"fingerprint": fingerprint, "model_version": version.model_version,
                                          "exams": len(head), "decision": result.decision})
    result.seconds = time.perf_counter() - t0
    return result


def _report_folder(out_dir: str | Path) -> Path:
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot write the report to {out}: {exc.strerror}") from None
    return out


def _all_records(data: EvalSet, head: EvalSet, split: str, seed: int, max_queries: int | None,
                 minimum: MinimumSizes, promotion: dict | None) -> tuple[list[MetricRecord], dict[str, int]]:
    """The headline records (one image per exam) and each view's, with the model's decision on every record."""
    records = evaluate_set(head, split, seed=seed, max_queries=max_queries, minimum=minimum)
    view_counts: dict[str, int] = {}
    for view in VIEWS:
        rows = data.one_per_exam(views=(view,))
        view_counts[view] = len(rows)
        records += evaluate_set(data.subset(rows), f"{split}/view={view}", seed=seed, max_queries=max_queries,
                                with_clustering=False, minimum=minimum) if len(rows) >= 3 else []
    state, collapsed = decision_state(promotion), (promotion or {}).get("collapsed")
    return [replace(r, decision=state, collapsed=collapsed) for r in records], view_counts


def _plots(result: EvaluationResult, head: EvalSet, model_version: str, shards: str | Path | None, seed: int,
           max_queries: int | None) -> dict[str, Path]:
    from . import plots as P

    out, split = result.out_dir, head.split
    pictures = {"2-D map of the embeddings": P.embedding_map(head, out / "map.png", seed=seed),
                "Precision at k": P.precision_curve_plot(precision_curve(head, seed=seed, max_queries=max_queries),
                                                         out / "precision_at_k.png", model_version)}
    per = [r for r in result.records if r.split == split and r.metric.startswith("precision_at_k/")]
    if per:
        pictures["Per-finding P@10"] = P.finding_bars(per, out / "per_finding.png")
    if shards is not None:
        path, note = P.gallery(head, shards, out / "gallery.png", seed=seed)
        if path is not None:
            pictures["Queries and their 5 nearest exams"] = path
        if note:
            result.notes.append(note)
    else:
        result.notes.append("no query gallery: give --shards SHARDS_DIR to draw the images")
    return pictures


def _unchanged_report(out: Path, fingerprint: str, model_version: str, n_items: int) -> EvaluationResult | None:
    """The report already in `out` when it was made from exactly these inputs, else None."""
    try:
        doc = json.loads((out / INPUTS_FILE).read_text(encoding="utf-8"))
        rows = json.loads((out / EVALUATION_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if doc.get("fingerprint") != fingerprint or not (out / REPORT_FILE).exists():
        return None
    fields = MetricRecord.__dataclass_fields__
    records = [MetricRecord(**{k: v for k, v in row.items() if k in fields}) for row in rows]
    result = EvaluationResult(model_version, out, records, n_items=n_items,
                              notes=["evaluation unchanged: the scored exams, their labels and vectors, the model and "
                                     "its decision are those of the report already here, which is kept"],
                              decision=doc.get("decision"), reused=True)
    result.files.update({"evaluation": out / EVALUATION_FILE, "report": out / REPORT_FILE})
    return result
