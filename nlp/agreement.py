"""Labels against a gold standard: precision, recall and F1 per finding with bootstrap intervals.

The protocol is the one used to measure radsim on held-out real reports: a finding counts as
predicted present when its value is 1 (uncertain -1 is not present); a finding the gold marks
uncertain is left out of that exam's score (`uncertain="exclude"`, or count it as "negative" or
"positive"). Scores come with 95% percentile-bootstrap intervals that resample exams (clusters),
within strata when the gold is a stratified audit sample, whose rows carry weights (stratum size
over rows sampled) so that the estimates describe the whole labelled table.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from radsim.data_contracts.intervals import Interval

STATUSES = ("present", "negated", "uncertain", "not_mentioned")
_STATUS_OF = {1: "present", 0: "negated", -1: "uncertain", None: "not_mentioned"}
UNCERTAIN_POLICIES = ("exclude", "negative", "positive")  # the first is the default
DEFAULT_BOOTSTRAP = 1000  # replicates behind each interval


@dataclass(frozen=True)
class GoldPair:
    """One (exam, finding) judgement: gold and predicted values (1/0/-1/None), and its sampling weight."""

    exam_id: str
    finding: str
    gold: int | None
    predicted: int | None
    weight: float = 1.0
    stratum: str = "all"
    complete: bool = False  # its stratum was judged whole: a census, with no sampling error


def weighted_pairs(judged: list[tuple[str, str, str, int | None, int | None]], sizes: dict[str, int]) -> list[GoldPair]:
    """(exam, finding, stratum, gold, predicted) → GoldPairs weighted size/judged per stratum (whole: complete)."""
    per_stratum: dict[str, int] = {}
    for _, _, stratum, _, _ in judged:
        per_stratum[stratum] = per_stratum.get(stratum, 0) + 1
    return [GoldPair(exam, finding, gold, pred, weight=sizes[stratum] / per_stratum[stratum], stratum=stratum,
                     complete=per_stratum[stratum] >= sizes[stratum])
            for exam, finding, stratum, gold, pred in judged]


@dataclass
class AgreementReport:
    findings: list[str]
    per_finding: dict[str, dict[str, Any]]  # finding -> precision/recall/f1 Intervals + counts
    macro: dict[str, Interval]
    micro: dict[str, Interval]
    confusion: dict[str, dict[str, float]]  # gold status -> predicted status -> weighted pairs
    uncertain: str
    n_exams: int
    n_pairs: int
    bootstrap: int
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "protocol": {
                "present": "value 1",
                "uncertain_gold": self.uncertain,
                "interval": "95% percentile bootstrap over exams",
                "bootstrap_replicates": self.bootstrap,
            },
            "n_exams": self.n_exams,
            "n_pairs": self.n_pairs,
            "macro": {k: v.as_dict(digits=4) for k, v in self.macro.items()},
            "micro": {k: v.as_dict(digits=4) for k, v in self.micro.items()},
            "per_finding": {
                f: {k: (v.as_dict(digits=4) if isinstance(v, Interval) else v) for k, v in d.items()}
                for f, d in self.per_finding.items()
            },
            "confusion": self.confusion,
            "notes": self.notes,
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2) + "\n"

    def to_markdown(self) -> str:
        lines = [f"# Label agreement ({self.n_exams} exams, {len(self.findings)} findings)", "",
                 "A finding is predicted present when its value is 1; gold-uncertain findings: "
                 f"{self.uncertain}. Intervals: 95% bootstrap over exams ({self.bootstrap} replicates).", "",
                 "| finding | precision | recall | F1 | gold positives | predicted positives |",
                 "|---|---|---|---|---|---|"]
        for f in self.findings:
            d = self.per_finding[f]
            lines.append(f"| {f} | {d['precision'].text()} | {d['recall'].text()} | {d['f1'].text()} | "
                         f"{_num(d['gold_positives'])} | {_num(d['predicted_positives'])} |")
        for name, avg in (("macro", self.macro), ("micro", self.micro)):
            lines.append(
                f"| **{name}** | {avg['precision'].text()} | {avg['recall'].text()} | {avg['f1'].text()} | | |"
            )
        lines += ["", "## Confusion (gold rows, predicted columns; weighted exam-finding pairs)", "",
                  "| gold \\ predicted | " + " | ".join(STATUSES) + " |", "|---" * (len(STATUSES) + 1) + "|"]
        for g in STATUSES:
            lines.append(f"| {g} | " + " | ".join(_num(self.confusion[g][p]) for p in STATUSES) + " |")
        lines += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines).rstrip() + "\n"

    def lines(self) -> list[str]:
        out = [
            f"label agreement over {self.n_exams} exam(s), {len(self.findings)} finding(s) (95% bootstrap intervals):"
        ]
        width = max(len(f) for f in self.findings) if self.findings else 8
        for f in self.findings:
            d = self.per_finding[f]
            out.append(f"  {f:<{width}}  P {d['precision'].text()}  R {d['recall'].text()}  F1 {d['f1'].text()}")
        out.append(f"  {'macro':<{width}}  P {self.macro['precision'].text()}  R {self.macro['recall'].text()}  "
                   f"F1 {self.macro['f1'].text()}")
        out.append(f"  {'micro':<{width}}  P {self.micro['precision'].text()}  R {self.micro['recall'].text()}  "
                   f"F1 {self.micro['f1'].text()}")
        return out


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.1f}"


def _prf(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with np.errstate(invalid="ignore", divide="ignore"):
        p = tp / (tp + fp)
        r = tp / (tp + fn)
        f1 = 2 * tp / (2 * tp + fp + fn)
    return p, r, f1


def _interval(point: float, samples: np.ndarray, exact: bool = False) -> Interval:
    if exact and not math.isnan(point):
        return Interval(float(point), float(point), float(point), exact=True)
    samples = samples[~np.isnan(samples)]
    if math.isnan(point) or samples.size == 0:
        return Interval(point, float("nan"), float("nan"))
    lo, hi = np.percentile(samples, [2.5, 97.5])
    return Interval(float(point), float(lo), float(hi))


@dataclass(frozen=True)
class _Clusters:
    """The exams (clusters) pairs belong to, and how a bootstrap replicate redraws them."""

    of_pair: np.ndarray  # each pair's cluster
    redrawn: list[np.ndarray]  # per sampled stratum, its clusters: redrawn with replacement
    fixed: np.ndarray  # the clusters of strata judged whole: kept as they are
    count: int

    @classmethod
    def of(cls, pairs: Sequence[GoldPair]) -> _Clusters:
        """Clusters are exams within strata; a replicate redraws each sampled stratum's clusters with replacement."""
        keys: dict[tuple[str, str], int] = {}
        of_pair = np.array([keys.setdefault((p.stratum, p.exam_id), len(keys)) for p in pairs])
        complete = {p.stratum for p in pairs if p.complete}
        strata: dict[str, list[int]] = {}
        for (stratum, _), c in keys.items():
            strata.setdefault(stratum, []).append(c)
        return cls(of_pair, [np.array(v) for s, v in strata.items() if s not in complete],
                   np.array([c for s, members in strata.items() if s in complete for c in members], dtype=int),
                   len(keys))


def score_agreement(pairs: Sequence[GoldPair], findings: Sequence[str], *, uncertain: str = UNCERTAIN_POLICIES[0],
                    bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> AgreementReport:
    """Precision, recall, F1 per finding, macro and micro averages, with bootstrap intervals."""
    if uncertain not in UNCERTAIN_POLICIES:
        raise ValueError(f"uncertain must be one of {UNCERTAIN_POLICIES}, got {uncertain!r}")
    findings = list(findings)
    index = {f: i for i, f in enumerate(findings)}
    pairs = [p for p in pairs if p.finding in index]
    if not pairs:
        raise ValueError("no (exam, finding) pair to score: the gold and the labels share no exam or finding")
    confusion = {g: {p: 0.0 for p in STATUSES} for g in STATUSES}
    for p in pairs:
        confusion[_STATUS_OF[p.gold]][_STATUS_OF[p.predicted]] += p.weight
    gold = np.array([{1: 1.0, 0: 0.0, None: 0.0, -1: np.nan}[p.gold] for p in pairs])
    if uncertain != "exclude":
        gold[np.isnan(gold)] = 1.0 if uncertain == "positive" else 0.0
    keep = ~np.isnan(gold)
    pred = np.array([p.predicted == 1 for p in pairs], dtype=float)
    weight = np.array([p.weight for p in pairs]) * keep
    gold = np.nan_to_num(gold)
    f_idx = np.array([index[p.finding] for p in pairs])
    clusters = _Clusters.of(pairs)
    # a finding is exact when every pair it is scored on comes from a stratum judged whole
    exact = [all(p.complete for p, k in zip(pairs, keep) if k and p.finding == f) for f in findings]
    n_f = len(findings)

    def counts(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        tp = np.bincount(f_idx, weights=w * pred * gold, minlength=n_f)
        fp = np.bincount(f_idx, weights=w * pred * (1 - gold), minlength=n_f)
        fn = np.bincount(f_idx, weights=w * (1 - pred) * gold, minlength=n_f)
        return tp, fp, fn

    tp, fp, fn = counts(weight)
    point = _prf(tp, fp, fn)
    boot = _bootstrap(counts, weight, clusters, n_f, bootstrap, seed)
    names = ("precision", "recall", "f1")
    per_finding: dict[str, dict[str, Any]] = {}
    for i, f in enumerate(findings):
        per_finding[f] = {name: _interval(float(point[k][i]), boot[:, k, i], exact[i]) for k, name in enumerate(names)}
        per_finding[f]["gold_positives"] = float(tp[i] + fn[i])
        per_finding[f]["predicted_positives"] = float(tp[i] + fp[i])
    micro_point = _prf(tp.sum(keepdims=True), fp.sum(keepdims=True), fn.sum(keepdims=True))
    macro = {name: _interval(float(np.nanmean(point[k])) if not np.all(np.isnan(point[k])) else float("nan"),
                             boot[:, k, n_f], all(exact)) for k, name in enumerate(names)}
    micro = {name: _interval(float(micro_point[k][0]), boot[:, k, n_f + 1], all(exact)) for k, name in enumerate(names)}
    notes = [f"{f}: no gold or predicted positive, left out of the macro average" for f in findings
             if math.isnan(float(point[2][findings.index(f)]))]
    if any(exact):
        notes.append("exact: every labelled exam of the strata it rests on was judged (a census), so it has no "
                     "sampling interval; strata judged whole are held fixed in the bootstrap of the others")
    n_exams = len({p.exam_id for p in pairs})
    return AgreementReport(findings, per_finding, macro, micro, confusion, uncertain,
                           n_exams=n_exams, n_pairs=len(pairs), bootstrap=bootstrap, notes=notes)


Counts = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]  # exam weights -> (tp, fp, fn)


def _bootstrap(counts: Counts, weight: np.ndarray, clusters: _Clusters, n_f: int, replicates: int,
               seed: int) -> np.ndarray:
    """[replicate, precision/recall/F1, finding... then macro, micro]: each sampled stratum's exams redrawn;
    the clusters of strata judged whole (`clusters.fixed`) are kept as they are."""
    rng = np.random.default_rng(seed)
    boot = np.full((replicates, 3, n_f + 2), np.nan)
    for b in range(replicates):
        mult = np.zeros(clusters.count)
        mult[clusters.fixed] = 1.0
        for m in clusters.redrawn:
            mult += np.bincount(m[rng.integers(0, len(m), len(m))], minlength=clusters.count)
        btp, bfp, bfn = counts(weight * mult[clusters.of_pair])
        per = _prf(btp, bfp, bfn)
        micro = _prf(btp.sum(keepdims=True), bfp.sum(keepdims=True), bfn.sum(keepdims=True))
        for k in range(3):
            boot[b, k, :n_f] = per[k]
            boot[b, k, n_f] = np.nanmean(per[k]) if not np.all(np.isnan(per[k])) else np.nan
            boot[b, k, n_f + 1] = micro[k][0]
    return boot

def pairs_from_tables(predicted: Iterable[dict[str, Any]], gold: Iterable[dict[str, Any]],
                      findings: Sequence[str]) -> list[GoldPair]:
    """Every (exam, finding) pair of the exams both tables hold, keyed by exam_id."""
    gold_rows = {str(r["exam_id"]): r for r in gold}
    out = []
    for row in predicted:
        g = gold_rows.get(str(row["exam_id"]))
        if g is None:
            continue
        for f in findings:
            out.append(GoldPair(str(row["exam_id"]), f, _value(g.get(f)), _value(row.get(f))))
    return out


def _value(v: Any) -> int | None:
    if (
        v is None
        or (isinstance(v, float) and math.isnan(v))
        or (isinstance(v, str) and v.strip() in ("", "null", "None"))
    ):
        return None
    return int(float(v))
