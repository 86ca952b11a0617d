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
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from radsim.data_contracts import IdKeyer, UsageError

from .config import DEFAULT_MAX_QUERIES
from .evaluate import evaluate_embeddings
from .retrieval import retrieval_scores
from .neighbours import random_embeddings
from radsim.warehouse.published import PublishedVersion, open_version

from .evalset import FRONTAL, VIEWS, EvalSet, load_eval_set, patient_keys, truth_labels
from .records import MetricRecord, records_to_table

__all__ = ["FRONTAL", "VIEWS", "EvalSet", "load_eval_set", "patient_keys", "truth_labels"]  # moved; still importable here

CURVE_KS = (1, 2, 3, 5, 10, 15, 20, 30, 50, 100)
EVALUATION_FILE = "evaluation.json"
REPORT_FILE = "report.md"


def _queries(n: int, max_queries: int | None, seed: int) -> np.ndarray | None:
    if not max_queries or n <= max_queries:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=max_queries, replace=False))


def evaluate_set(data: EvalSet, split_name: str, *, seed: int = 0, max_queries: int | None = DEFAULT_MAX_QUERIES,
                 with_clustering: bool = True) -> list[MetricRecord]:
    """evaluation.evaluate_embeddings on one subset; [] when it has fewer than 3 items."""
    if len(data) < 3:
        return []
    normal = data.findings.index("no_finding") if "no_finding" in data.findings else None
    return evaluate_embeddings(data.embeddings, data.labels, model_version=data.model_version, split=split_name,
                               finding_names=data.findings, normal_index=normal, seed=seed,
                               queries=_queries(len(data), max_queries, seed), with_clustering=with_clustering,
                               groups=data.interval_groups)


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

    def record(self, metric: str, k: int | None = None, split: str | None = None) -> MetricRecord | None:
        split = split or (self.records[0].split if self.records else None)
        for r in self.records:
            if r.metric == metric and (k is None or r.k == k) and r.split == split:
                return r
        return None

    def headline(self) -> list[str]:
        """One line per headline metric: value [95% interval], chance and random, and a flag when it is noise."""
        lines = []
        for metric, k, label in HEADLINE:
            r = self.record(metric, k)
            if r is not None:
                lines.append(f"{label:<22} {_with_ci(r):<22} chance {_fmt(r.chance_value)}   random "
                             f"{_fmt(r.random_value)}{'   ' + NOT_DISTINGUISHABLE if r.distinguishable is False else ''}")
        return lines

    def summary(self) -> str:
        return "\n".join([f"evaluate: model version {self.model_version}, {self.n_items} exams; report in {self.out_dir}",
                          *("  " + line for line in self.headline()), *("  note: " + n for n in self.notes)])


HEADLINE = (
    ("precision_at_k", 1, "P@1"), ("precision_at_k", 5, "P@5"), ("precision_at_k", 10, "P@10"),
    ("map_at_r", None, "mAP@R"), ("ndcg_at_k", 10, "NDCG@10"), ("normal_auc", 10, "normal-vs-abnormal AUC"),
    ("nmi", None, "k-means NMI"), ("purity", None, "k-means purity"),
)


NOT_DISTINGUISHABLE = "not distinguishable from chance"


def _fmt(v: float | None) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def _with_ci(r: MetricRecord) -> str:
    if r.ci_low is None or r.ci_high is None:
        return _fmt(r.value)
    return f"{_fmt(r.value)} [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]"


def _flag(r: MetricRecord) -> str:
    return {True: "above chance and random", False: f"**{NOT_DISTINGUISHABLE}**", None: ""}[r.distinguishable]


def _find(records: Sequence[MetricRecord], metric: str, k: int | None, split: str) -> MetricRecord | None:
    for r in records:
        if r.metric == metric and r.split == split and (k is None or r.k == k):
            return r
    return None


def render_markdown(result: EvaluationResult, data: EvalSet, version: PublishedVersion, views: dict[str, int],
                    plots: dict[str, Path], split: str) -> str:
    recs = result.records
    card = version.model_card()
    lines = [f"# Evaluation of model version `{result.model_version}`", ""]
    lines += [
        f"- Table: `{version.published_dir}` (published {version.record.get('published_at')}, "
        f"{version.record.get('rows')} rows, D={version.embedding_dim}, key_id `{version.key_id}`)",
        f"- Model: {card.get('backbone', '?')} backbone, {card.get('loss', '?')} loss",
        f"- Labels: {data.label_source}",
        f"- Split `{split}`: {data.n_split_rows} images; {data.n_unlabelled} without labels left out; "
        f"{result.n_items} exams evaluated (one image per exam, frontal first)",
        "- A neighbour is relevant when it shares at least one label (no_finding counts as a label). "
        "`chance` is the value expected under a random ranking; `random` is the metric on random unit vectors.",
        f"- Intervals: 95% bootstrap, resampling {'patients' if data.groups is not None else 'exams (no shard manifest was given: --shards SHARDS_DIR resamples patients)'}. "
        f"A metric whose interval reaches its chance or random value is flagged *{NOT_DISTINGUISHABLE}*.",
        "",
        "## Headline",
        "",
        "| metric | neighbours k | clusters | value [95% CI] | chance | random | |",
        "|---|---|---|---|---|---|---|",
    ]
    for metric, k, label in HEADLINE:
        r = _find(recs, metric, k, split)
        if r is not None:
            lines.append(f"| {label} | {'' if r.k is None else r.k} | {'' if r.clusters is None else r.clusters} | "
                         f"{_with_ci(r)} | {_fmt(r.chance_value)} | {_fmt(r.random_value)} | {_flag(r)} |")
    per = [r for r in recs if r.split == split and r.metric.startswith("precision_at_k/")]
    if per:
        lines += ["", f"## Per-finding P@{per[0].k}", "",
                  "A neighbour counts when it has the query's finding. Findings on fewer than 2 exams are left out.", "",
                  "| finding | value | chance | random |", "|---|---|---|---|"]
        for r in sorted(per, key=lambda r: r.metric):
            lines.append(f"| {r.metric.split('/', 1)[1]} | {_fmt(r.value)} | {_fmt(r.chance_value)} | {_fmt(r.random_value)} |")
    lines += ["", "## By view", "",
              "Each view's images are evaluated among themselves. AP and portable films correlate with support "
              "devices, a known shortcut.", "",
              "| view | images | P@10 | chance | mAP@R | chance | normal AUC |", "|---|---|---|---|---|---|---|"]
    for view in VIEWS:
        s = f"{split}/view={view}"
        p10, mp, auc = _find(recs, "precision_at_k", 10, s), _find(recs, "map_at_r", None, s), _find(recs, "normal_auc", None, s)
        if p10 is None:
            lines.append(f"| {view} | {views.get(view, 0)} | too few images | | | | |")
        else:
            lines.append(f"| {view} | {views.get(view, 0)} | {_fmt(p10.value)} | {_fmt(p10.chance_value)} | "
                         f"{_fmt(mp.value if mp else None)} | {_fmt(mp.chance_value if mp else None)} | "
                         f"{_fmt(auc.value if auc else None)} |")
    if plots:
        lines += ["", "## Plots", ""]
        for title, path in plots.items():
            lines += [f"### {title}", "", f"![{title}]({path.name})", ""]
    if result.notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in result.notes]]
    lines += ["", f"Records: `{EVALUATION_FILE}` (evaluation contract). Not a medical device.", ""]
    return "\n".join(lines)


def write_records(records: Sequence[MetricRecord], path: Path) -> Path:
    records_to_table(records)  # validate against the evaluation contract before writing
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps([r.to_dict() for r in records], indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def run_evaluation(published_dir: str | Path, out_dir: str | Path, *, model_version: str | None = None,
                   truth: str | Path | pa.Table | None = None, keyer: IdKeyer | None = None,
                   shards: str | Path | None = None, split: str = "test", seed: int = 0,
                   max_queries: int | None = DEFAULT_MAX_QUERIES, plots: bool = True) -> EvaluationResult:
    """Evaluate a published version and write evaluation.json, report.md and the PNG plots in `out_dir`."""
    t0 = time.perf_counter()
    version = open_version(published_dir, model_version, verify="full")
    data = load_eval_set(version, split=split, truth=truth, keyer=keyer, shards=shards)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot write the report to {out}: {exc.strerror}") from None
    notes: list[str] = []
    head_rows = data.one_per_exam()
    head = data.subset(head_rows)
    if len(head) < 3:
        raise UsageError(f"split {split!r} of model version {version.model_version} has {len(head)} labelled exam(s); "
                         "need at least 3 to evaluate (try --split all)")
    records = evaluate_set(head, split, seed=seed, max_queries=max_queries)
    view_counts: dict[str, int] = {}
    for view in VIEWS:
        rows = data.one_per_exam(views=(view,))
        view_counts[view] = len(rows)
        recs = evaluate_set(data.subset(rows), f"{split}/view={view}", seed=seed, max_queries=max_queries,
                            with_clustering=False) if len(rows) >= 3 else []
        records += recs
    if max_queries and len(head) > max_queries:
        notes.append(f"retrieval metrics use {max_queries} seeded queries of {len(head)} (the gallery is all exams)")
    result = EvaluationResult(version.model_version, out, records, notes=notes, n_items=len(head))
    result.files["evaluation"] = write_records(records, out / EVALUATION_FILE)
    pictures: dict[str, Path] = {}
    if plots:
        from . import plots as P

        pictures["2-D map of the embeddings"] = P.embedding_map(head, out / "map.png", seed=seed)
        pictures["Precision at k"] = P.precision_curve_plot(precision_curve(head, seed=seed, max_queries=max_queries),
                                                            out / "precision_at_k.png", version.model_version)
        per = [r for r in records if r.split == split and r.metric.startswith("precision_at_k/")]
        if per:
            pictures["Per-finding P@10"] = P.finding_bars(per, out / "per_finding.png")
        if shards is not None:
            path, note = P.gallery(head, shards, out / "gallery.png", seed=seed)
            if path is not None:
                pictures["Queries and their 5 nearest exams"] = path
            if note:
                notes.append(note)
        else:
            notes.append("no query gallery: give --shards SHARDS_DIR to draw the images")
    result.files.update({p.stem: p for p in pictures.values()})
    report = out / REPORT_FILE
    report.write_text(render_markdown(result, head, version, view_counts, pictures, split), encoding="utf-8")
    result.files["report"] = report
    result.seconds = time.perf_counter() - t0
    return result
