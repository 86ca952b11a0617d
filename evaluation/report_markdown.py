"""report.md of `radsim evaluate`: the model decision, the headline, per-finding and per-view tables.

Every row carries the exams and patients it rests on, an interval and a verdict, or says it is
too few to judge (radsim.evaluation.judge); the random baseline shows its spread over draws.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .display import decision_text, fmt, interval_text, random_text
from .evalset import VIEWS, EvalSet
from .records import MetricRecord
from .retrieval import DEFAULT_K, DEFAULT_KS

# (metric, k, label) at radsim evaluate's ks (radsim.evaluation.retrieval)
HEADLINE = (
    *(("precision_at_k", k, f"P@{k}") for k in DEFAULT_KS),
    ("map_at_r", None, "mAP@R"),
    ("ndcg_at_k", DEFAULT_K, f"NDCG@{DEFAULT_K}"),
    ("normal_auc", DEFAULT_K, "normal-vs-abnormal AUC"),
    ("nmi", None, "k-means NMI"),
    ("purity", None, "k-means purity"),
)
VIEW_METRICS = (("precision_at_k", DEFAULT_K, f"P@{DEFAULT_K}"), ("map_at_r", None, "mAP@R"),
                ("normal_auc", DEFAULT_K, "normal AUC"))


def find(records: Sequence[MetricRecord], metric: str, k: int | None, split: str) -> MetricRecord | None:
    for r in records:
        if r.metric == metric and r.split == split and (k is None or r.k == k):
            return r
    return None


def _sizes(r: MetricRecord) -> str:
    return f"{r.n_queries if r.n_queries is not None else '?'} ({r.n_patients if r.n_patients is not None else '?'})"


def _cells(r: MetricRecord) -> str:
    """value [CI] | chance | random ± sd | verdict — or the reason it is too few to judge."""
    if not r.judged:
        return f"{interval_text(r.value, None, None, r.verdict, r.note)} | {fmt(r.chance_value)} | " \
               f"{random_text(r.random_value, r.random_sd)} | |"
    return (f"{interval_text(r.value, r.ci_low, r.ci_high, r.verdict, markdown=True)} | {fmt(r.chance_value)} | "
            f"{random_text(r.random_value, r.random_sd)} | {r.verdict} |")


def _about(data: EvalSet, version: Any, n_items: int, split: str) -> list[str]:
    card = version.model_card()
    resampled = "patients" if data.groups is not None else \
        "exams (no shard manifest was given: --shards SHARDS_DIR resamples patients)"
    return [
        f"- Table: `{version.published_dir}` (published {version.record.get('published_at')}, "
        f"{version.record.get('rows')} rows, D={version.embedding_dim}, key_id `{version.key_id}`)",
        f"- Model: {card.get('backbone', '?')} backbone, {card.get('loss', '?')} loss",
        f"- Model decision: {decision_text(card.get('promotion'))}",
        f"- Labels: {data.label_source}",
        f"- Split `{split}`: {data.n_split_rows} images; {data.n_unlabelled} without labels left out; "
        f"{n_items} exams evaluated (one image per exam, frontal first)",
        "- A neighbour is relevant when it shares at least one label (no_finding counts as a label).",
        "- `chance` is each metric's true null on these exams: its mean when the labels are permuted among them, "
        "each patient's films kept together, on the same neighbours and k. `random` is the mean (± sd) over "
        "several random embeddings.",
        "- Intervals (95%) invert each metric's permutation test, so an interval clear of chance is a permutation "
        f"test at 5%; a metric without a null (mAP@R on very large sets) has a bootstrap interval resampling "
        f"{resampled}. Verdicts: above chance, below chance, not distinguishable, or too few to judge (too few exams "
        "for k, patients or classes); a value too few to judge is kept in evaluation.json only.",
    ]


def _headline(recs: Sequence[MetricRecord], split: str) -> list[str]:
    lines = ["## Headline", "", "| metric | neighbours k | clusters | exams (patients) | value [95% CI] | chance | "
             "random | verdict |", "|---|---|---|---|---|---|---|---|"]
    for metric, k, label in HEADLINE:
        r = find(recs, metric, k, split)
        if r is not None:
            lines.append(f"| {label} | {'' if r.k is None else r.k} | {'' if r.clusters is None else r.clusters} | "
                         f"{_sizes(r)} | {_cells(r)}")
    return lines


def _per_finding(recs: Sequence[MetricRecord], split: str) -> list[str]:
    per = sorted((r for r in recs if r.split == split and r.metric.startswith("precision_at_k/")),
                 key=lambda r: r.metric)
    if not per:
        return []
    lines = ["", f"## Per-finding P@{per[0].k}", "",
             "The queries are the exams having the finding; a neighbour counts when it has it too. Findings on "
             "fewer than 2 exams are left out.", "",
             "| finding | exams (patients) | value [95% CI] | chance | random | verdict |", "|---|---|---|---|---|---|"]
    lines += [f"| {r.metric.split('/', 1)[1]} | {_sizes(r)} | {_cells(r)}" for r in per]
    return lines


def _by_view(recs: Sequence[MetricRecord], views: dict[str, int], split: str) -> list[str]:
    lines = ["", "## By view", "", "Each view's images are evaluated among themselves. AP and portable films "
             "correlate with support devices, a known shortcut.", "",
             "| view | metric | exams (patients) | value [95% CI] | chance | random | verdict |",
             "|---|---|---|---|---|---|---|"]
    for view in VIEWS:
        found = [(label, find(recs, metric, k, f"{split}/view={view}")) for metric, k, label in VIEW_METRICS]
        found = [(label, r) for label, r in found if r is not None]
        if not found:
            lines.append(f"| {view} | | {views.get(view, 0)} | too few to judge (fewer than 3 exams) | | | |")
        lines += [f"| {view} | {label} | {_sizes(r)} | {_cells(r)}" for label, r in found]
    return lines


def render_markdown(result: Any, data: EvalSet, version: Any, views: dict[str, int], plots: dict[str, Path],
                    split: str) -> str:
    lines = [f"# Evaluation of model version `{result.model_version}`", "",
             *_about(data, version, result.n_items, split), "", *_headline(result.records, split),
             *_per_finding(result.records, split), *_by_view(result.records, views, split)]
    if plots:
        lines += ["", "## Plots", ""]
        for title, path in plots.items():
            lines += [f"### {title}", "", f"![{title}]({path.name})", ""]
    if result.notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in result.notes]]
    lines += ["", "Records: `evaluation.json` (evaluation contract). Not a medical device.", ""]
    return "\n".join(lines)
