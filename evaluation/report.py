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

import pyarrow as pa

from radsim.data_contracts import IdKeyer, UsageError
from radsim.data_contracts.atomic import write_json_atomic
from radsim.data_contracts.settings import with_values
from radsim.warehouse.layout import EVALUATION_FILE, EVALUATION_INPUTS_FILE, REPORT_FILE
from radsim.warehouse.published import open_version

from .config import DEFAULT_CONFIG, EvalConfig
from .display import decision_state, decision_text, record_line
from .evalset import FRONTAL, VIEWS, EvalSet, inputs_fingerprint, load_eval_set, patient_keys, truth_labels
from .evaluate import EvaluationOptions, evaluate_embeddings, sample_queries
from .judge import DEFAULT_MINIMUM, MinimumSizes
from .neighbours import random_embeddings
from .records import MetricRecord, records_to_table
from .report_markdown import HEADLINE, render_markdown
from .retrieval import DEFAULT_K, RetrievalSpec, retrieval_scores

# moved; still importable here
__all__ = ["FRONTAL", "VIEWS", "EvalSet", "load_eval_set", "patient_keys", "truth_labels"]

CURVE_KS = (1, 2, 3, 5, 10, 15, 20, 30, 50, 100)
INPUTS_FILE = EVALUATION_INPUTS_FILE  # what the report was computed from, so an unchanged one is kept


def evaluate_set(data: EvalSet, split_name: str, config: EvalConfig = DEFAULT_CONFIG, *, with_clustering: bool = True,
                 minimum: MinimumSizes = DEFAULT_MINIMUM) -> list[MetricRecord]:
    """evaluation.evaluate_embeddings on one subset with `config`'s seed and query sample; [] under 3 items."""
    if len(data) < 3:
        return []
    normal = data.findings.index("no_finding") if "no_finding" in data.findings else None
    options = EvaluationOptions(seed=config.seed, with_clustering=with_clustering, minimum=minimum,
                                max_queries=config.max_queries)
    return evaluate_embeddings(data.embeddings, data.labels, model_version=data.model_version, split=split_name,
                               finding_names=data.findings, normal_index=normal, groups=data.interval_groups,
                               options=options)


def precision_curve(data: EvalSet, config: EvalConfig = DEFAULT_CONFIG) -> dict[str, Any]:
    """P@k for k in CURVE_KS (up to n-1): model, random embeddings and chance."""
    ks = tuple(k for k in CURVE_KS if k <= len(data) - 1)
    if not ks:
        return {"k": [], "model": [], "random": [], "chance": []}
    spec = RetrievalSpec(ks=ks, ndcg_ks=(), finding_k=None, normal_index=None, with_map=False)
    queries = sample_queries(len(data), config.max_queries, config.seed)
    s = retrieval_scores(data.embeddings, data.labels, spec, queries=queries)
    r = retrieval_scores(random_embeddings(*data.embeddings.shape, config.seed), data.labels, spec, queries=queries)
    return {"k": list(ks), "model": [s.precision_at_k[k] for k in ks], "random": [r.precision_at_k[k] for k in ks],
            "chance": [s.precision_at_k_chance[k] for k in ks]}


@dataclass(frozen=True)
class EvalInputs:
    """What an evaluation reads besides the published table (each optional)."""

    model_version: str | None = None  # default: the newest publish record
    truth: str | Path | pa.Table | None = None  # labels-contract table keyed by raw exam_id: replaces the labels
    keyer: IdKeyer | None = None  # hashes `truth`'s exam ids (needed with it)
    shards: str | Path | None = None  # patients for the intervals, images for the query gallery


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
        return "\n".join(
            [
                f"evaluate: model version {self.model_version}, {self.n_items} exams; report in {self.out_dir}",
                *(["  model decision: " + self.decision] if self.decision else []),
                *("  " + line for line in self.headline()),
                *("  note: " + n for n in self.notes),
            ]
        )


def write_records(records: Sequence[MetricRecord], path: Path) -> Path:
    records_to_table(records)  # validate against the evaluation contract before writing
    return write_json_atomic(path, [r.to_dict() for r in records])


def run_evaluation(published_dir: str | Path, out_dir: str | Path, config: EvalConfig | None = None, *,
                   inputs: EvalInputs = EvalInputs(), minimum: MinimumSizes = DEFAULT_MINIMUM, reuse: bool = False,
                   **settings: Any) -> EvaluationResult:
    """Evaluate a published version and write evaluation.json, report.md and the PNG plots in `out_dir`.

    `config` (EvalConfig: split, max_queries, seed, plots), with any EvalConfig field given as a
    keyword (`plots=False`) set. `minimum` (radsim.evaluation.judge) sets the sizes below which a
    metric is too few to judge; the calibration benchmark lowers it to measure them. With `reuse`
    (the scheduled pipeline), a report whose inputs are unchanged (radsim.evaluation.evalset.
    inputs_fingerprint: the model, its decision, the scored rows, their labels and vectors, the
    settings) is kept as it is.
    """
    t0 = time.perf_counter()
    cfg = with_values(EvalConfig, config, settings, "evaluation settings")
    version = open_version(published_dir, inputs.model_version, verify="full")
    data = load_eval_set(version, split=cfg.split, truth=inputs.truth, keyer=inputs.keyer, shards=inputs.shards)
    out = _report_folder(out_dir)
    head = data.subset(data.one_per_exam())
    if len(head) < 3:
        raise UsageError(f"split {cfg.split!r} of model version {version.model_version} has {len(head)} labelled "
                         "exam(s); need at least 3 to evaluate (try --split all)")
    promotion = version.model_card().get("promotion")
    decision = decision_text(promotion) if promotion else None
    fingerprint = inputs_fingerprint(data, cfg.split, {"seed": cfg.seed, "max_queries": cfg.max_queries,
                                                       "minimum": minimum.__dict__, "decision": decision})
    if reuse and (kept := _unchanged_report(out, fingerprint, version.model_version, len(head))) is not None:
        return kept
    records, view_counts = _all_records(data, head, cfg, minimum, promotion)
    notes = [f"retrieval metrics use {cfg.max_queries} seeded queries of {len(head)} (the gallery is all exams)"] \
        if cfg.max_queries and len(head) > cfg.max_queries else []
    result = EvaluationResult(version.model_version, out, records, notes=notes, n_items=len(head), decision=decision)
    result.files["evaluation"] = write_records(records, out / EVALUATION_FILE)
    pictures = _plots(result, head, inputs.shards, cfg) if cfg.plots else {}
    result.files.update({p.stem: p for p in pictures.values()})
    report = out / REPORT_FILE
    report.write_text(render_markdown(result, head, version, view_counts, pictures, cfg.split), encoding="utf-8")
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


def _all_records(data: EvalSet, head: EvalSet, config: EvalConfig, minimum: MinimumSizes,
                 promotion: dict | None) -> tuple[list[MetricRecord], dict[str, int]]:
    """The headline records (one image per exam) and each view's, with the model's decision on every record."""
    records = evaluate_set(head, config.split, config, minimum=minimum)
    view_counts: dict[str, int] = {}
    for view in VIEWS:
        rows = data.one_per_exam(views=(view,))
        view_counts[view] = len(rows)
        records += evaluate_set(data.subset(rows), f"{config.split}/view={view}", config, with_clustering=False,
                                minimum=minimum) if len(rows) >= 3 else []
    state, collapsed = decision_state(promotion), (promotion or {}).get("collapsed")
    return [replace(r, decision=state, collapsed=collapsed) for r in records], view_counts


def _plots(result: EvaluationResult, head: EvalSet, shards: str | Path | None, config: EvalConfig) -> dict[str, Path]:
    from . import plots as P

    out, split, model_version = result.out_dir, head.split, result.model_version
    pictures = {"2-D map of the embeddings": P.embedding_map(head, out / "map.png", seed=config.seed),
                "Precision at k": P.precision_curve_plot(precision_curve(head, config), out / "precision_at_k.png",
                                                         model_version)}
    per = [r for r in result.records if r.split == split and r.metric.startswith("precision_at_k/")]
    if per:
        pictures[f"Per-finding P@{DEFAULT_K}"] = P.finding_bars(per, out / "per_finding.png")
    if shards is not None:
        path, note = P.gallery(head, shards, out / "gallery.png", seed=config.seed)
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
