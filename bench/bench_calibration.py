"""Are radsim's verdicts calibrated? False claims under permuted labels, power under true labels (issue 21).

For each data set, a model is trained and every exam is embedded and published; then, at each
size n (12 exams to all of the held-out exams), `repeats` random subsets are evaluated exactly as
`radsim evaluate --truth T --shards S` evaluates them (headline, per finding, per view):

- under **permuted labels**: T gives each exam another exam's labels (shuffled among the n exams),
  so no association can exist, and every record whose interval lies wholly above or below its
  chance value is a false claim. Target: at most 7% of judged (interval-bearing) records;
- under the **true labels**: the share of records called above chance (power), and whether P@10
  and the normal-vs-abnormal AUC are called above chance at full size.

Data sets: nih-dev (480 real NIH films; a model trained on one half of the patients and scored on
the other half, both ways: nih-dev/A and nih-dev/B) and a synthetic cohort (image truth). `--no-minimum` drops
the minimum sizes of radsim.evaluation.judge (keeping only the k rule), to measure where claims
go wrong at small sizes: the defaults are chosen from that table.

    python -m bench.bench_calibration                       # both data sets, 10 repeats (about 25 minutes)
    python -m bench.bench_calibration --datasets nih --repeats 3
    python -m bench.bench_calibration --no-minimum --json calibration.json
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.bench_real import BASE, NIH_DIR, folds_of, nih_tables, read_nih, shard_fold
from radsim.warehouse.layout import EXAMS_FILE, LABELS_FILE, MANIFEST_FILE, TRUTH_FILE

TARGET_FALSE_CLAIMS = 0.07
CLAIMS = ("above chance", "below chance")


@dataclass
class Dataset:
    name: str
    published: Path
    shards: Path
    truth: list[dict]  # labels-contract rows (exam_id, one value per finding) of the held-out exams


def _train_and_publish(shards: Path, work: Path, seed: int, **train: object) -> Path:
    from radsim.model.publish import publish
    from radsim.model.train import train_embedding_model

    result = train_embedding_model(shards, work / "model", progress=False, seed=seed, **train)
    publish(result.model_dir, shards, work / "published", device="cpu", make_current=False)
    print(f"  trained and published {result.model_version} ({result.steps} steps)", flush=True)
    return work / "published"


def nih_dataset(work: Path, nih: Path, seed: int, fold: int) -> Dataset:
    """nih-dev: train on one half of the patients, hold out the other half (`fold`, all views)."""
    rows = read_nih(nih)
    folds = folds_of(rows, 2, seed)
    shards = shard_fold(rows, nih, fold, folds, work / "shards", seed)
    published = _train_and_publish(shards, work, seed, **{**BASE, "threads": 2})
    held_out = {r["image_id"] for r in rows if folds[r["patient_id"]] == fold}
    _, labels = nih_tables(rows, nih)
    truth = [r for r in labels.drop_columns(["evidence", "labeler_version"]).to_pylist() if r["exam_id"] in held_out]
    return Dataset(f"nih-dev/{'AB'[fold]}", published, shards, truth)


def synthetic_dataset(work: Path, exams: int, seed: int) -> Dataset:
    """A synthetic cohort with report noise; its test split (40% of patients) scored against the image truth."""
    import pyarrow.parquet as pq

    from radsim.data_contracts import demo_keyer, load_contract, write_parquet_atomic
    from radsim.data_contracts.ingest import ingest_manifests
    from radsim.imaging.shards import write_shards
    from radsim.nlp.runner import label_file
    from radsim.synthetic import generate_cohort

    cohort = generate_cohort(work / "cohort", exams=exams, seed=seed, omission_rate=0.1, overcall_rate=0.1,
                             image_size=128, progress=False, overwrite=True)
    write_parquet_atomic(ingest_manifests([cohort.exams_path]).exams, work / EXAMS_FILE, load_contract("exams"))
    label_file(work / EXAMS_FILE, work / LABELS_FILE, progress=False)
    write_shards(work / EXAMS_FILE, work / LABELS_FILE, work / "shards", keyer=demo_keyer(), image_size=64,
                 workers=2, progress=False, split_fractions=(0.5, 0.1, 0.4))
    published = _train_and_publish(work / "shards", work, seed, image_size=64, device="cpu", threads=2,
                                   max_minutes=3.0)
    keyer = demo_keyer()
    test = {r["exam_key"] for r in pq.read_table(work / "shards" / MANIFEST_FILE).to_pylist()
            if r["split"] == "test"}
    truth = [r for r in pq.read_table(cohort.out_dir / TRUTH_FILE).to_pylist()
             if keyer.exam_key(r["exam_id"]) in test]
    return Dataset("synthetic", published, work / "shards", truth)


def evaluate_subset(ds: Dataset, n: int, rng: np.random.Generator, permuted: bool, work: Path, minimum) -> list:
    """`radsim evaluate` on n held-out exams, with their labels or with the labels shuffled among them."""
    import pyarrow as pa

    from radsim.data_contracts import demo_keyer
    from radsim.evaluation.report import EvalInputs, run_evaluation

    rows = [ds.truth[i] for i in np.sort(rng.choice(len(ds.truth), size=min(n, len(ds.truth)), replace=False))]
    if permuted:
        values = [{k: v for k, v in r.items() if k != "exam_id"} for r in rows]
        rows = [{"exam_id": r["exam_id"], **values[j]} for r, j in zip(rows, rng.permutation(len(rows)))]
    truth = pa.Table.from_pylist(rows)
    out = work / "report"
    shutil.rmtree(out, ignore_errors=True)
    result = run_evaluation(ds.published, out, inputs=EvalInputs(truth=truth, keyer=demo_keyer(), shards=ds.shards),
                            split="test", plots=False, seed=int(rng.integers(1 << 30)), minimum=minimum)
    return result.records


def family(metric: str) -> str:
    return "precision_at_k/<finding>" if metric.startswith("precision_at_k/") else metric


def wilson(k: int, n: int) -> tuple[float, float]:
    if n == 0:
        return math.nan, math.nan
    p, z = k / n, 1.96
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


PATIENT_BUCKETS = ((1, 2), (3, 4), (5, 9), (10, 19), (20, 10**9))


def bucket(patients: int | None) -> str:
    """The patients-behind-a-record bucket, for choosing the minimum sizes."""
    for low, high in PATIENT_BUCKETS:
        if patients is not None and low <= patients <= high:
            return f"{low}-{high}" if high < 10**9 else f"{low}+"
    return "?"


def tally(records: list, key: tuple) -> dict:
    """Counts per (data set, n, condition, metric family) and per patients bucket: judged, claims, above chance."""
    counts: dict = defaultdict(lambda: defaultdict(int))
    for r in records:
        by_patients = ("patients", key[2], bucket(r.n_patients), family(r.metric))
        for group in (key + (family(r.metric),), key + ("all",), by_patients, by_patients[:3] + ("all",)):
            c = counts[group]
            c["records"] += 1
            c["judged"] += r.judged
            c["claims"] += r.verdict in CLAIMS
            c["above"] += r.verdict == "above chance"
    return counts


def run(args: argparse.Namespace) -> dict:
    from radsim.evaluation.judge import DEFAULT_MINIMUM, MinimumSizes

    minimum = MinimumSizes(patients=1, class_size=1) if args.no_minimum else DEFAULT_MINIMUM
    sizes = [s for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="radsim-bench-calibration-"))
    counts: dict = defaultdict(lambda: defaultdict(int))
    headline: dict = {}
    try:
        names = [n for name in args.datasets.split(",") for n in (("nih-A", "nih-B") if name == "nih" else (name,))]
        for name in names:
            t0 = time.perf_counter()
            print(f"{name}: preparing", flush=True)
            ds = nih_dataset(work / name, Path(args.nih), args.seed, "AB".index(name[-1])) if name.startswith("nih") \
                else synthetic_dataset(work / name, args.synthetic_exams, args.seed)
            rng = np.random.default_rng(args.seed)
            for size in sizes:
                n = len(ds.truth) if size == "all" else int(size)
                for condition in ("permuted", "true"):
                    for _ in range(args.repeats if condition == "permuted" or size != "all" else 1):
                        records = evaluate_subset(ds, n, rng, condition == "permuted", work / name, minimum)
                        for group, c in tally(records, (ds.name, n, condition)).items():
                            for k, v in c.items():
                                counts[group][k] += v
                        if condition == "true" and size == "all":
                            headline[ds.name] = {f"{r.metric}@{r.k}": (r.value, r.ci_low, r.ci_high, r.chance_value,
                                                                         r.verdict)
                                                 for r in records if r.split == "test"}
                print(f"  n={n}: done ({time.perf_counter() - t0:.0f} s)", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"counts": {"|".join(map(str, k)): dict(v) for k, v in counts.items()}, "headline": headline,
            "minimum": minimum.__dict__, "repeats": args.repeats}


def report(doc: dict) -> str:
    everything = {tuple(k.split("|")): v for k, v in doc["counts"].items()}
    counts = {k: v for k, v in everything.items() if k[0] != "patients"}
    lines = [f"minimum sizes: {doc['minimum']}; {doc['repeats']} random subsets per size and condition", "",
             "Under permuted labels (every claim is false), judged records and false claims:",
             f"{'data set':<10} {'n':>5} {'metric':<26} {'judged':>7} {'false claims':>13} {'rate [95% CI]':>22}"]
    total = [0, 0]
    for (ds, n, cond, fam), c in sorted(counts.items(), key=lambda kv: (kv[0][0], int(kv[0][1]), kv[0][3])):
        if cond != "permuted":
            continue
        if fam == "all":
            total[0] += c["claims"]
            total[1] += c["judged"]
        lo, hi = wilson(c["claims"], c["judged"])
        rate = f"{c['claims'] / c['judged']:.3f} [{lo:.3f}, {hi:.3f}]" if c["judged"] else "n/a"
        lines.append(f"{ds:<10} {n:>5} {fam:<26} {c['judged']:>7} {c['claims']:>13} {rate:>22}")
    overall, (overall_lo, overall_hi) = total[0] / total[1] if total[1] else math.nan, wilson(*total)
    lines += ["", "By the patients behind a record, under permuted labels (what the minimum sizes rest on):",
              f"{'patients':>9} {'metric':<26} {'judged':>7} {'false claims':>13} {'rate [95% CI]':>22}"]
    for (_, cond, band, fam), c in sorted(((k, v) for k, v in everything.items() if k[0] == "patients"),
                                          key=lambda kv: (int(kv[0][2].split("-")[0].rstrip("+?") or 0), kv[0][3])):
        if cond == "permuted" and c["judged"]:
            lo, hi = wilson(c["claims"], c["judged"])
            lines.append(f"{band:>9} {fam:<26} {c['judged']:>7} {c['claims']:>13} "
                         f"{c['claims'] / c['judged']:.3f} [{lo:.3f}, {hi:.3f}]")
    lines += ["", f"OVERALL false claims: {total[0]} of {total[1]} judged records = {overall:.3f} "
              f"[{overall_lo:.3f}, {overall_hi:.3f}]"
              f"   target <= {TARGET_FALSE_CLAIMS:.2f}: {'PASS' if overall <= TARGET_FALSE_CLAIMS else 'MISSED'}", "",
              "Under the true labels, power (share of judged records called above chance):",
              f"{'data set':<10} {'n':>5} {'metric':<26} {'judged':>7} {'above':>7} {'power':>7}"]
    for (ds, n, cond, fam), c in sorted(counts.items(), key=lambda kv: (kv[0][0], int(kv[0][1]), kv[0][3])):
        if cond == "true":
            power = f"{c['above'] / c['judged']:.2f}" if c["judged"] else "n/a"
            lines.append(f"{ds:<10} {n:>5} {fam:<26} {c['judged']:>7} {c['above']:>7} {power:>7}")
    for ds, recs in doc["headline"].items():
        lines += ["", f"{ds}, all held-out exams, true labels:"]
        for key in ("precision_at_k@10", "normal_auc@10", "map_at_r@None", "nmi@None"):
            if key in recs:
                v, lo_, hi_, chance, verdict = recs[key]
                ci = f"[{lo_:.3f}, {hi_:.3f}]" if lo_ is not None else ""
                lines.append(f"  {key:<20} {v:.3f} {ci:<16} chance {chance if chance is None else round(chance, 3)}  "
                             f"{verdict}")
        ok = all(recs.get(k, (None,) * 5)[4] == "above chance" for k in ("precision_at_k@10", "normal_auc@10"))
        lines.append(f"  P@10 and normal AUC called above chance: {'PASS' if ok else 'MISSED'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="nih,synthetic", help="comma-separated: nih, synthetic")
    parser.add_argument("--sizes", default="12,30,100,all", help="exams per evaluated subset (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=10, help="random subsets per size and condition")
    parser.add_argument("--synthetic-exams", type=int, default=1500)
    parser.add_argument("--nih", default=str(NIH_DIR), help="the nih-dev folder (default: ../shared/data/nih-dev)")
    parser.add_argument("--no-minimum", action="store_true", help="drop the minimum sizes (keep the k rule)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    if "nih" in args.datasets and not (Path(args.nih) / "manifest.csv").exists():
        print(f"nih-dev not found at {args.nih}", file=sys.stderr)
        return 2
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    doc = run(args)
    print("\n" + report(doc))
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
