"""A rehearsal at hospital scale (issue 24): the whole pipeline on N synthetic exams, then a 1% nightly increment.

For each size N in --sizes (default 10,000 and 100,000), in fresh folders:
- synth: `radsim synth --exams N + 1% --image-size 64`; the extra 1% is held back for the increment;
- run: `radsim run INBOX --warehouse WH --demo-key --force-promote --truth VALIDATED` with 32 px shard and
  model images and training capped at --steps steps of --batch images, split into its stages by its
  "[k/6]" progress lines (start-up, ingest, label, shard, train, embed+publish, evaluate). VALIDATED
  is a fixed validated subset (--validated exams of the first night's inbox, as the paper's 4,500),
  so, as at a site, a night's new exams are not in it and the nightly evaluation is kept unchanged;
- evaluate: `radsim evaluate --truth TRUTH` (the image truth of every exam) on the published test
  split, on its own: the largest evaluation a site can ask for (target 4);
- nightly (largest size): the held-back 1% moved into the inbox, `radsim run` again.
Every step is a new process (bench/scale_watch.py): seconds, items/s, peak RSS of its process tree,
bytes written. Targets, each printed PASS or MISSED:
1. cost per item (seconds per exam) grows <= 1.2x from the smallest to the largest size, for the
   whole run and every stage whose work grows with the cohort (ingest, label, shard, embed+publish);
2. peak RSS grows <= 1.5x, for every stage;
3. the 1% increment costs <= 5% of the full run (wall clock);
4. `radsim evaluate` on the largest test split stays bounded: at most --max-queries queries (its
   report says so when the split is larger) and under --eval-bound seconds.
With sizes below 10,000 it also prints what the stages would take at 10,000 and 100,000 exams,
fitted per stage as fixed + per-exam cost from the two smallest sizes (linear: it cannot see
superlinear work, which the growth targets are there to catch).

    python -m bench.bench_scale --sizes 300,2000     # a few minutes: smoke run and estimate
    python -m bench.bench_scale                      # 10,000 and 100,000 exams: hours
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from radsim.warehouse.layout import MANIFEST_FILE, REPORT_FILE, TRUTH_FILE

from .scale_watch import StageFigures, Watch, run_stage_of

GROWING = ("ingest", "label", "shard", "embed+publish")  # stages whose work grows with the cohort
FIXED = ("start-up", "train")  # Prefect and imports; training capped at --steps: estimated by their mean
MAX_COST_GROWTH, MAX_RSS_GROWTH, MAX_INCREMENT, INCREMENT = 1.2, 1.5, 0.05, 0.01
DRIVER = (
    "import sys; from radsim.flows.cli import main; rc = main(sys.argv[1:]); print('@@done', flush=True); sys.exit(rc)"
)
MIB = 1 << 20


def _env(root: Path, args: argparse.Namespace) -> dict[str, str]:
    env = {**os.environ, "PREFECT_HOME": str(root / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1", "RADSIM_IMAGE_SIZE": str(args.image_size),
           "RADSIM_MODEL_IMAGE_SIZE": str(args.image_size), "RADSIM_MODEL_MAX_STEPS": str(args.steps),
           "RADSIM_MODEL_BATCH_SIZE": str(args.batch), "RADSIM_WORKERS": str(args.workers)}
    env.pop("PREFECT_API_URL", None)
    env.pop("RADSIM_ID_KEY", None)
    return env


def _radsim(*argv: str) -> list[str]:
    return [sys.executable, "-c", DRIVER, *argv]


def _hold_back(inbox: Path, later: Path, n: int) -> int:
    """Move the exam folders beyond the first `n` (sorted) out of the inbox: tomorrow's new exams."""
    later.mkdir(parents=True)
    folders = sorted(p for p in inbox.iterdir() if p.is_dir())
    for folder in folders[n:]:
        folder.rename(later / folder.name)
    return len(folders) - n


def _count(root: Path, pattern: str) -> int:
    return sum(1 for _ in root.glob(pattern))


def _split_rows(shards: Path, split: str) -> int:
    import pyarrow.parquet as pq

    return pq.read_table(shards / MANIFEST_FILE, columns=["split"]).column("split").to_pylist().count(split)


def run_size(n: int, root: Path, env: dict[str, str], args: argparse.Namespace, nightly: bool) -> dict:
    """Synth, run, evaluate (and the nightly increment) at one size: stage figures and item counts."""
    held = max(1, round(n * INCREMENT))
    cohort, wh = root / f"cohort-{n}", root / f"wh-{n}"
    out: dict = {"exams": n, "stages": []}
    synth = Watch(_radsim("synth", "--exams", str(n + held), "--out", str(cohort), "--image-size", "64",
                          "--seed", "7", "--no-progress"), env, cohort, "synth").run()
    out["stages"] += _rows(synth, {"synth": n + held})
    _hold_back(cohort / "inbox", root / f"later-{n}", n)
    validated = _validated_subset(cohort, args.validated)
    images = _count(cohort / "inbox", "*/*.dcm")
    run = Watch(_radsim("run", str(cohort / "inbox"), "--warehouse", str(wh), "--demo-key", "--force-promote",
                        "--truth", str(validated), "--no-progress"), env, wh, "start-up",
                run_stage_of).run()
    test = _split_rows(wh / "shards", "test")
    items = {"start-up": 0, "ingest": n, "label": n, "shard": images, "train": args.steps * args.batch,
             "embed+publish": images, "evaluate": test}
    out["stages"] += _rows(run, items)
    out["run_s"] = sum(s.seconds for s in run)
    out["run_peak_rss"] = max(s.peak_rss for s in run)
    report = root / f"report-{n}"
    evaluate = Watch(_radsim("evaluate", "--embeddings", str(wh / "published"), "--out", str(report),
                             "--truth", str(cohort / TRUTH_FILE), "--demo-key", "--shards", str(wh / "shards"),
                             "--max-queries", str(args.max_queries)), env, report, "radsim evaluate").run()
    out["stages"] += _rows(evaluate, {"radsim evaluate": test})
    out["test_exams"], out["evaluate_s"] = test, evaluate[0].seconds
    out["evaluate_note"] = _query_note(report)
    if nightly:
        for folder in sorted((root / f"later-{n}").iterdir()):
            folder.rename(cohort / "inbox" / folder.name)
        again = Watch(_radsim("run", str(cohort / "inbox"), "--warehouse", str(wh), "--demo-key", "--force-promote",
                              "--truth", str(validated), "--no-progress"), env, wh, "start-up",
                      run_stage_of).run()
        out["nightly_exams"], out["nightly_s"] = held, sum(s.seconds for s in again)
        out["nightly_stages"] = _rows(again, {s.name: held for s in again})
    shutil.rmtree(cohort, ignore_errors=True)  # the next size needs the disk more than we need these
    shutil.rmtree(wh, ignore_errors=True)
    return out


def _validated_subset(cohort: Path, size: int) -> Path:
    """A seeded sample of `size` exams of tonight's inbox with their image truth: the site's validated subset."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    present = {p.name for p in (cohort / "inbox").iterdir() if p.is_dir()}
    truth = pq.read_table(cohort / TRUTH_FILE)
    rows = [i for i, exam in enumerate(truth.column("exam_id").to_pylist()) if exam in present]
    chosen = np.sort(np.random.default_rng(11).choice(rows, size=min(size, len(rows)), replace=False))
    path = cohort / "validated.parquet"
    pq.write_table(truth.take(pa.array(chosen)), path)
    return path


def _query_note(report: Path) -> str:
    text = (report / REPORT_FILE).read_text() if (report / REPORT_FILE).exists() else ""
    notes = [line.strip("- ").strip() for line in text.splitlines() if "seeded queries" in line]
    return notes[0] if notes else ""


def _rows(stages: list[StageFigures], items: dict[str, int]) -> list[dict]:
    return [{"stage": s.name, "seconds": round(s.seconds, 3), "items": items.get(s.name, 0),
             "items_per_s": round(items.get(s.name, 0) / s.seconds, 1) if s.seconds > 0 else None,
             "peak_rss_mib": round(s.peak_rss / MIB, 1),
             "written_mib": None if s.written is None else round(s.written / MIB, 1),
             "output_grew_mib": round(s.grew / MIB, 1), "lines": s.lines[-12:]} for s in stages]


def _table(results: list[dict]) -> None:
    sizes = [r["exams"] for r in results]
    print(f"\n{'stage':<16}" + "".join(f"| {n:>7} exams: s   items/s  RSS MiB  wrote MiB " for n in sizes))
    names = list(dict.fromkeys(row["stage"] for r in results for row in r["stages"]))
    for name in names:
        cells = []
        for r in results:
            row = next((x for x in r["stages"] if x["stage"] == name), None)
            cells.append("| " + (f"{row['seconds']:>12.1f} {row['items_per_s'] or 0:>9.1f} {row['peak_rss_mib']:>8.0f} "
                                 f"{row['written_mib'] if row['written_mib'] is not None else float('nan'):>10.1f} "
                                 if row else " " * 42))
        print(f"{name:<16}" + "".join(cells))
    for r in results:
        print(f"whole `radsim run` at {r['exams']} exams: {r['run_s']:.1f} s ({r['exams'] / r['run_s']:.1f} exams/s), "
              f"peak RSS {r['run_peak_rss'] / MIB:.0f} MiB; test split {r['test_exams']} exams")


def _row(result: dict, name: str) -> dict | None:
    return next((x for x in result["stages"] if x["stage"] == name), None)


def _cost_growth(small: dict, large: dict) -> dict[str, float]:
    """Seconds per item at the large size over seconds per item at the small one, per growing stage."""
    growth = {"whole run": (large["run_s"] / large["exams"]) / (small["run_s"] / small["exams"])}
    for name in GROWING:
        a, b = _row(small, name), _row(large, name)
        if a and b and a["items"] and b["items"] and a["seconds"] > 0:
            growth[name] = (b["seconds"] / b["items"]) / (a["seconds"] / a["items"])
    return growth


def targets(results: list[dict], args: argparse.Namespace) -> list[tuple[str, bool, str]]:
    small, large = results[0], results[-1]
    span = f"{small['exams']} -> {large['exams']} exams"
    cost = _cost_growth(small, large)
    worst_cost = max(cost, key=cost.__getitem__)
    rss = {x["stage"]: x["peak_rss_mib"] / max(_row(small, x["stage"])["peak_rss_mib"], 1e-9)  # type: ignore[index]
           for x in large["stages"] if _row(small, x["stage"])}
    worst_rss = max(rss, key=rss.__getitem__)
    increment = large.get("nightly_s", float("nan")) / large["run_s"]
    capped = large["test_exams"] <= args.max_queries or str(args.max_queries) in large["evaluate_note"]
    return [
        (f"cost per item grows <= {MAX_COST_GROWTH}x ({span})", cost[worst_cost] <= MAX_COST_GROWTH,
         f"worst {worst_cost} {cost[worst_cost]:.2f}x; " + ", ".join(f"{k} {v:.2f}x" for k, v in cost.items())),
        (f"peak RSS grows <= {MAX_RSS_GROWTH}x ({span})", rss[worst_rss] <= MAX_RSS_GROWTH,
         f"worst {worst_rss} {rss[worst_rss]:.2f}x; " + ", ".join(f"{k} {v:.2f}x" for k, v in rss.items())),
        (f"the {INCREMENT:.0%} increment costs <= {MAX_INCREMENT:.0%} of the full run", increment <= MAX_INCREMENT,
         f"{large.get('nightly_exams', 0)} new exams: {large.get('nightly_s', float('nan')):.1f} s against "
         f"{large['run_s']:.1f} s ({increment:.1%})"),
        (f"radsim evaluate on the test split is bounded (<= {args.max_queries} queries, <= {args.eval_bound:.0f} s)",
         capped and large["evaluate_s"] <= args.eval_bound,
         f"{large['test_exams']} test exams in {large['evaluate_s']:.1f} s; report: "
         f"{large['evaluate_note'] or 'no query note (the split is under the cap)'}"),
    ]


def estimate(results: list[dict], sizes: tuple[int, ...] = (10_000, 100_000)) -> dict[int, dict[str, float]]:
    """Per stage fixed + per-exam seconds from the two smallest sizes, extrapolated to `sizes`."""
    a, b = results[0], results[1]
    fitted: dict[int, dict[str, float]] = {n: {} for n in sizes}
    for row in b["stages"]:
        first = _row(a, row["stage"])
        if first is None:
            continue
        slope = 0.0 if row["stage"] in FIXED else (row["seconds"] - first["seconds"]) / (b["exams"] - a["exams"])
        fixed = (
            (first["seconds"] + row["seconds"]) / 2 if row["stage"] in FIXED else first["seconds"] - slope * a["exams"]
        )
        for n in sizes:
            fitted[n][row["stage"]] = max(0.0, fixed + slope * n)
    return fitted


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--sizes", default="10000,100000", help="cohort sizes in exams, smallest first (default: %(default)s)"
    )
    ap.add_argument("--steps", type=int, default=20, help="training steps (default: %(default)s)")
    ap.add_argument("--batch", type=int, default=32, help="training batch size (default: %(default)s)")
    ap.add_argument("--image-size", type=int, default=32, help="shard and model image size (default: %(default)s)")
    ap.add_argument("--workers", type=int, default=2, help="task runner workers (default: %(default)s)")
    ap.add_argument("--validated", type=int, default=4500, help="exams in the validated subset the pipeline evaluates "
                    "against (default: %(default)s, the paper's)")
    ap.add_argument(
        "--max-queries", type=int, default=5000, help="radsim evaluate --max-queries (default: %(default)s)"
    )
    ap.add_argument("--eval-bound", type=float, default=600.0, help="seconds radsim evaluate may take at the largest "
                    "size (default: %(default)s)")
    ap.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    args = ap.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    if len(sizes) < 2:
        ap.error("--sizes needs two sizes or more, e.g. 300,2000")
    root = Path(tempfile.mkdtemp(prefix="radsim-bench-scale-"))
    env = _env(root, args)
    print(
        f"bench_scale: sizes {sizes}, {os.cpu_count()} CPU(s), load {os.getloadavg()[0]:.2f}, work in {root}",
        flush=True,
    )
    results = []
    try:
        t = time.perf_counter()
        Watch([sys.executable, "-c", "from prefect import flow; flow(name='bench-empty')(lambda: None)()"], env,
              root / "prefect-home", "prefect").run()  # the Prefect database is created once, outside any stage
        print(f"Prefect database created in {time.perf_counter() - t:.1f} s (not counted)", flush=True)
        for n in sizes:
            t = time.perf_counter()
            results.append(run_size(n, root, env, args, nightly=n == sizes[-1]))
            print(f"{n} exams done in {time.perf_counter() - t:.0f} s", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    _report(results, args)
    return 0


def _report(results: list[dict], args: argparse.Namespace) -> None:
    _table(results)
    large = results[-1]
    print(f"nightly increment at {large['exams']} exams: " + ", ".join(
        f"{x['stage']} {x['seconds']:.1f} s" for x in large.get("nightly_stages", [])))
    checks = targets(results, args)
    print()
    for text, ok, detail in checks:
        print(f"{'PASS  ' if ok else 'MISSED'} {text}: {detail}")
    fitted = estimate(results) if results[-1]["exams"] < 100_000 else {}
    for n, stages in fitted.items():
        print(f"estimate at {n} exams (linear fit of {results[0]['exams']} and {results[1]['exams']}): "
              f"{sum(stages.values()) / 60:.1f} min = " + ", ".join(f"{k} {v:.0f} s" for k, v in stages.items()))
    if fitted:
        total = sum(sum(stages.values()) for stages in fitted.values()) + large.get("nightly_s", 0.0)
        print(f"estimated wall of the default run (--sizes 10000,100000): {total / 60:.0f} min plus the 100,000-exam "
              f"nightly increment (measured here: {large.get('nightly_s', float('nan')):.0f} s at {large['exams']})")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "targets": [
            {"target": t, "pass": ok, "detail": d} for t, ok, d in checks], "estimate": fitted}, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
