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

from .evaluate import evaluate_embeddings
from .metrics import retrieval_scores
from .neighbours import random_embeddings
from .published import PublishedVersion, embedding_matrix, label_matrix, open_version
from .records import MetricRecord, records_to_table

VIEWS = ("PA", "AP", "LATERAL")
FRONTAL = ("PA", "AP")
CURVE_KS = (1, 2, 3, 5, 10, 15, 20, 30, 50, 100)
DEFAULT_MAX_QUERIES = 5000
EVALUATION_FILE = "evaluation.json"
REPORT_FILE = "report.md"


@dataclass
class EvalSet:
    """The labelled rows of one split of a published version, with their vectors and label sets."""

    model_version: str
    split: str
    findings: list[str]
    exam_keys: list[str]
    image_index: np.ndarray
    views: list[str | None]
    embeddings: np.ndarray  # [N, D]
    labels: np.ndarray  # [N, F] bool
    label_source: str
    n_split_rows: int
    n_unlabelled: int

    def __len__(self) -> int:
        return len(self.exam_keys)

    def subset(self, rows: np.ndarray) -> EvalSet:
        rows = np.asarray(rows, dtype=np.int64)
        return EvalSet(self.model_version, self.split, self.findings, [self.exam_keys[i] for i in rows],
                       self.image_index[rows], [self.views[i] for i in rows], self.embeddings[rows], self.labels[rows],
                       self.label_source, self.n_split_rows, self.n_unlabelled)

    def one_per_exam(self, views: Sequence[str] | None = None) -> np.ndarray:
        """Row per exam: the first frontal image, else the first image (restricted to `views` if given)."""
        best: dict[str, tuple[int, int, int]] = {}
        for i, (key, idx, view) in enumerate(zip(self.exam_keys, self.image_index, self.views)):
            if views is not None and view not in views:
                continue
            rank = (0 if view in FRONTAL else 1, int(idx), i)
            if key not in best or rank < best[key]:
                best[key] = rank
        return np.array(sorted(r[2] for r in best.values()), dtype=np.int64)


def _vocabulary(findings: Sequence[str]):
    from radsim.data_contracts import Finding, Vocabulary

    return Vocabulary("published", "0", tuple(Finding(f, derived=f == "no_finding") for f in findings))


def truth_labels(truth: str | Path | pa.Table, keyer: IdKeyer, findings: Sequence[str]) -> dict[str, np.ndarray]:
    """exam_key → bool label vector (value 1 = present) from a labels-contract table keyed by exam_id."""
    from radsim.data_contracts import check_vocabulary, load_contract, read_input_table

    table = truth if isinstance(truth, pa.Table) else read_input_table(truth)
    vocab = _vocabulary(findings)
    check_vocabulary(table, vocab, "truth")
    contract = load_contract("labels", vocab)
    table = table.drop_columns([c for c in table.column_names if c not in contract.column_names])
    if "positive_findings" not in table.column_names and all(f in table.column_names for f in findings):
        # a validated subset may carry only the per-finding values: derive the list the contract requires
        cols = [table.column(f).to_pylist() for f in findings]
        pos = [[f for f, v in zip(findings, vals) if v == 1] for vals in zip(*cols)] if cols else []
        table = table.append_column("positive_findings", pa.array(pos, pa.list_(pa.string())))
    table = contract.validate(table)
    ids = table.column("exam_id").to_pylist()
    values = np.stack([np.asarray(table.column(f).to_pylist(), dtype=object) for f in findings], axis=1) if ids else \
        np.zeros((0, len(findings)), dtype=object)
    out: dict[str, np.ndarray] = {}
    for exam_id, row in zip(ids, values):
        out[keyer.exam_key(exam_id)] = np.array([v == 1 for v in row], dtype=bool)
    return out


def load_eval_set(version: PublishedVersion, *, split: str = "test", truth: str | Path | pa.Table | None = None,
                  keyer: IdKeyer | None = None) -> EvalSet:
    """The rows to evaluate: one split (or 'all'), labelled by the table or by `truth`."""
    if split not in ("train", "val", "test", "all"):
        raise UsageError(f"--split must be train, val, test or all, got {split!r}")
    table = version.read(["exam_key", "image_index", "split", "view_position", "embedding", "positive_findings",
                          "no_finding"])
    if split != "all":
        import pyarrow.compute as pc

        table = table.filter(pc.equal(table.column("split"), split))
    keys = table.column("exam_key").to_pylist()
    findings = list(version.findings)
    if truth is not None:
        if keyer is None:
            raise UsageError("--truth needs the pseudonymisation key (RADSIM_ID_KEY, or --demo-key for the demo)")
        if keyer.key_id != version.key_id:
            raise UsageError(f"the table was keyed with key_id {version.key_id!r} but this run's key is {keyer.key_id!r}: "
                             "--truth ids would not match (use the same RADSIM_ID_KEY, or --demo-key for the demo)")
        by_key = truth_labels(truth, keyer, findings)
        keep = np.array([k in by_key for k in keys], dtype=bool)
        labels = np.stack([by_key[k] for k, ok in zip(keys, keep) if ok]) if keep.any() else \
            np.zeros((0, len(findings)), bool)
        source = f"truth table {truth if not isinstance(truth, pa.Table) else '(in memory)'}"
    else:
        keep = np.array([v is not None for v in table.column("no_finding").to_pylist()], dtype=bool)
        labels = label_matrix([p for p, ok in zip(table.column("positive_findings").to_pylist(), keep) if ok], findings)
        source = "published report-derived labels (noisy)"
    idx = np.flatnonzero(keep)
    sub = table.take(pa.array(idx, pa.int64())) if len(idx) != table.num_rows else table
    emb = embedding_matrix(sub) if sub.num_rows else np.zeros((0, version.embedding_dim), np.float32)
    return EvalSet(version.model_version, split, findings, sub.column("exam_key").to_pylist(),
                   np.asarray(sub.column("image_index").to_pylist(), dtype=np.int64),
                   sub.column("view_position").to_pylist(), emb, labels, source, table.num_rows,
                   int(table.num_rows - len(idx)))


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
                               queries=_queries(len(data), max_queries, seed), with_clustering=with_clustering)


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
        """One line per headline metric with chance and random beside it (for the terminal and the demo)."""
        lines = []
        for metric, k, label in HEADLINE:
            r = self.record(metric, k)
            if r is not None:
                lines.append(f"{label:<22} {_fmt(r.value)}   chance {_fmt(r.chance_value)}   random {_fmt(r.random_value)}")
        return lines

    def summary(self) -> str:
        return "\n".join([f"evaluate: model version {self.model_version}, {self.n_items} exams; report in {self.out_dir}",
                          *("  " + line for line in self.headline()), *("  note: " + n for n in self.notes)])


HEADLINE = (
    ("precision_at_k", 1, "P@1"), ("precision_at_k", 5, "P@5"), ("precision_at_k", 10, "P@10"),
    ("map_at_r", None, "mAP@R"), ("ndcg_at_k", 10, "NDCG@10"), ("normal_auc", 10, "normal-vs-abnormal AUC"),
    ("nmi", None, "k-means NMI"), ("purity", None, "k-means purity"),
)


def _fmt(v: float | None) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


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
        "",
        "## Headline",
        "",
        "| metric | k | value | chance | random |",
        "|---|---|---|---|---|",
    ]
    for metric, k, label in HEADLINE:
        r = _find(recs, metric, k, split)
        if r is not None:
            lines.append(f"| {label} | {'' if r.k is None else r.k} | **{_fmt(r.value)}** | {_fmt(r.chance_value)} | "
                         f"{_fmt(r.random_value)} |")
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
    data = load_eval_set(version, split=split, truth=truth, keyer=keyer)
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
