"""Label-noise study (issue 5): do ML2 and ML2+ degrade as reports get noisier?

For each noise level p a synthetic cohort is generated with `omission_rate = overcall_rate = p`
(each present finding is left out of the report with probability p, and with probability p
one absent finding is reported present). The noise touches only the report text: images,
patients and splits come from the same seed, so they are identical across levels (checked
below through the manifests' image hashes). Labels come from the noisy reports through the
NLP labeller, as in production; the 0% level still carries the labeller's and the reports'
own noise (hedged findings, typos), which is printed as the measured noise per level.

Each (loss, noise, training seed) is trained with `train_embedding_model` (small CNN, CPU,
one thread; model selection on the NOISY validation labels, as a site would do), then its
best model is evaluated on the TEST split against the IMAGE truth (truth.parquet): P@10,
mAP@R, NMI (k-means on the 10 most frequent label-powerset classes) and normal-vs-abnormal
kNN AUC. The table gives mean ± sd over seeds; the verdict compares each loss's drop from
the lowest to the highest noise level, with a standard error.

    python -m bench.bench_noise          # default: 2,000 exams, 64 px, 20 epochs x 27 runs (~20-30 min, 2 cores)
    python -m bench.bench_noise --exams 300 --seeds 1 --minutes 0.2 --losses ml2 --noise 0 0.4   # smoke run

Results go to bench/results/bench_noise.json. Finished runs are cached under --work and
reused on a rerun with the same settings (--fresh discards them).
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # `python bench/bench_noise.py`: make `bench.bench_train` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_train import split_images, truth_matrix
from bench.cohorts import label_and_shard
from radsim.warehouse.layout import LABELS_FILE, MANIFEST_FILE, TRUTH_FILE

METRICS = ("precision_at_10", "map_at_r", "nmi", "normal_auc")
HEADS = {"precision_at_10": "P@10", "map_at_r": "mAP@R", "nmi": "NMI", "normal_auc": "normal AUC"}
RESULTS = Path(__file__).resolve().parent / "results" / "bench_noise.json"


# ------------------------------------------------------------------------------ cohorts
def build_level(work: Path, n_exams: int, noise: float, render_size: int, shard_size: int, seed: int = 0) -> Path:
    """synth (noise in the reports only) -> ingest -> label -> shard (demo key); reused when present."""
    from radsim.synthetic import generate_cohort

    shards = work / "shards"
    if (shards / MANIFEST_FILE).exists():
        return work
    shutil.rmtree(work, ignore_errors=True)
    t0 = time.perf_counter()
    cohort = generate_cohort(work / "cohort", exams=n_exams, seed=seed, omission_rate=noise, overcall_rate=noise,
                             image_size=render_size, progress=False, overwrite=True)
    label_and_shard(cohort, work, shards, shard_size, workers=1)
    print(f"cohort noise {noise:.0%}: {n_exams} exams rendered at {render_size} px, labelled, sharded at "
          f"{shard_size} px in {time.perf_counter() - t0:.1f} s", flush=True)
    return work


def _positive_matrix(path: Path, findings: list[str]) -> dict[str, np.ndarray]:
    """exam_id -> 0/1 vector (1 only for a definite positive; uncertain and unmentioned count as absent)."""
    import pyarrow.parquet as pq

    return {r["exam_id"]: np.array([r[f] == 1 for f in findings], dtype=bool) for r in pq.read_table(path).to_pylist()}


def measured_noise(level_dir: Path, findings: list[str]) -> dict:
    """How far the report-derived labels are from the image truth, over all labelled exams."""
    truth = _positive_matrix(level_dir / "cohort" / TRUTH_FILE, findings)
    labels = _positive_matrix(level_dir / LABELS_FILE, findings)
    ids = sorted(set(truth) & set(labels))
    t = np.stack([truth[i] for i in ids])
    lab = np.stack([labels[i] for i in ids])
    f = [k for k, name in enumerate(findings) if name != "no_finding"]
    tf, lf = t[:, f], lab[:, f]
    return {
        "exams": len(ids),
        "missed_positive_rate": round(float((tf & ~lf).sum() / max(tf.sum(), 1)), 4),
        "spurious_positive_rate": round(float((~tf & lf).sum() / max((~tf).sum(), 1)), 4),
        "exams_with_wrong_label_set": round(float((t != lab).any(1).mean()), 4),
        "no_finding_flipped": round(float((t[:, 0] != lab[:, 0]).mean()), 4) if findings[0] == "no_finding" else None,
    }


def test_set(level_dir: Path):
    """(test images [N,1,S,S], image-truth labels [N,F], findings, manifest image hashes of the test rows)."""
    import pyarrow.parquet as pq

    shards = level_dir / "shards"
    rows, truth, findings = truth_matrix(shards, level_dir / "cohort" / TRUTH_FILE)
    manifest = pq.read_table(shards / MANIFEST_FILE, columns=["exam_key", "image_sha256"]).to_pylist()
    hashes = [(manifest[i]["exam_key"], manifest[i]["image_sha256"]) for i in rows]
    return split_images(shards, rows), truth, findings, hashes


# ------------------------------------------------------------------------------ one run
def score(emb: np.ndarray, truth: np.ndarray, findings: list[str], seed: int = 0) -> dict:
    """P@10, mAP@R, NMI and the normal AUC, each with its true null at this size (radsim.evaluation)."""
    from radsim.evaluation import evaluate_embeddings
    from radsim.evaluation.evaluate import EvaluationOptions

    options = EvaluationOptions(ks=(10,), ndcg_k=None, with_findings=False, random_draws=0, seed=seed)
    records = evaluate_embeddings(emb, truth, model_version="bench", split="test", finding_names=findings,
                                  normal_index=findings.index("no_finding"), options=options)
    names = {"precision_at_k": "precision_at_10", "map_at_r": "map_at_r", "nmi": "nmi", "normal_auc": "normal_auc"}
    by = {names[r.metric]: r for r in records if r.metric in names}
    return {**{name: r.value for name, r in by.items()}, "chance": {name: r.chance_value for name, r in by.items()}}


def train_and_score(shards: Path, model_dir: Path, images, truth: np.ndarray, findings: list[str], *, loss: str,
                    seed: int, minutes: float, epochs: int, train_size: int | None, patience: int | None) -> dict:
    import torch

    from radsim.model.checkpoint import load_model
    from radsim.model.embed import embed_images
    from radsim.model.train import train_embedding_model

    shutil.rmtree(model_dir, ignore_errors=True)
    result = train_embedding_model(shards, model_dir, loss=loss, epochs=epochs, image_size=train_size,
                                   max_minutes=minutes, seed=seed, device="cpu", progress=False, num_threads=1,
                                   patience=patience)
    if result.card.image_size != images.shape[-1]:
        from radsim.model.data import resize_images

        images = resize_images((images * 255).round().to(torch.uint8), result.card.image_size).float() / 255
    emb = embed_images(load_model(model_dir).model, images, device="cpu")
    out = score(emb, truth, findings, seed=0)
    out["training"] = {"seconds": round(result.seconds, 1), "steps": result.steps, "epochs_run": result.epochs_run,
                       "best_epoch": result.best_epoch, "stopped": result.stopped,
                       "images_per_s": round(result.images_per_s, 1),
                       "val_p10_noisy": result.card.metrics.get("precision_at_10")}
    return out


# ------------------------------------------------------------------------------ summary
def mean_sd(values: list[float]) -> tuple[float, float]:
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def summarise(runs: list[dict], losses: list[str], noises: list[float]) -> dict:
    table: dict[str, dict[str, dict]] = {}
    for loss in losses:
        for p in noises:
            cell = [r for r in runs if r["loss"] == loss and r["noise"] == p]
            table.setdefault(loss, {})[f"{p:g}"] = {
                m: dict(zip(("mean", "sd"), mean_sd([r[m] for r in cell])), n=len(cell)) for m in METRICS}
    return table


def degradation(table: dict, losses: list[str], lo: float, hi: float) -> dict:
    """Per loss and metric: mean(hi) - mean(lo) and its standard error (unpaired, over seeds)."""
    out: dict[str, dict] = {}
    for loss in losses:
        for m in METRICS:
            a, b = table[loss][f"{lo:g}"][m], table[loss][f"{hi:g}"][m]
            se = math.sqrt(a["sd"] ** 2 / max(a["n"], 1) + b["sd"] ** 2 / max(b["n"], 1))
            out.setdefault(loss, {})[m] = {"delta": b["mean"] - a["mean"], "se": se}
    return out


def verdict(drops: dict, a: str = "ml2plus", b: str = "ml2") -> tuple[list[str], dict]:
    """Per metric: does `a` lose less than `b`, and is the gap larger than twice its standard error?"""
    lines, flags = [], {}
    for m in METRICS:
        da, db = drops[a][m], drops[b][m]
        gap = da["delta"] - db["delta"]  # > 0: a degrades less
        se = math.sqrt(da["se"] ** 2 + db["se"] ** 2)
        clear = abs(gap) > 2 * se
        word = f"holds up {'better' if gap > 0 else 'worse'} than {b}" + ("" if clear else " (within noise)")
        flags[m] = {"gap": gap, "se": se, "ml2plus_degrades_less": gap > 0, "beyond_2se": clear}
        lines.append(f"- {HEADS[m]}: {a} {da['delta']:+.3f} vs {b} {db['delta']:+.3f} -> {a} {word} "
                     f"(gap {gap:+.3f} ± {se:.3f})")
    return lines, flags


def levels_at(table: dict, noise: float, a: str = "ml2plus", b: str = "ml2") -> tuple[list[str], dict]:
    """Absolute comparison at one noise level: a smaller drop from a lower start is no gain."""
    lines, flags = [], {}
    for m in METRICS:
        ca, cb = table[a][f"{noise:g}"][m], table[b][f"{noise:g}"][m]
        diff = ca["mean"] - cb["mean"]
        se = math.sqrt(ca["sd"] ** 2 / max(ca["n"], 1) + cb["sd"] ** 2 / max(cb["n"], 1))
        clear = abs(diff) > 2 * se
        flags[m] = {"diff": diff, "se": se, "beyond_2se": clear}
        lines.append(f"- {HEADS[m]}: {a} {ca['mean']:.3f} vs {b} {cb['mean']:.3f} ({diff:+.3f} ± {se:.3f}"
                     f"{'' if clear else ', within noise'})")
    return lines, flags


def markdown(table: dict, losses: list[str], noises: list[float]) -> str:
    lines = ["| loss | noise | " + " | ".join(HEADS[m] for m in METRICS) + " |",
             "|---|---|" + "---|" * len(METRICS)]
    for loss in losses:
        for p in noises:
            c = table[loss][f"{p:g}"]
            vals = " | ".join(f"{c[m]['mean']:.3f} ± {c[m]['sd']:.3f}" for m in METRICS)
            lines.append(f"| {loss} | {p:.0%} | {vals} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exams", type=int, default=2000, help="cohort size per noise level")
    ap.add_argument("--render-size", type=int, default=128, help="synthetic render size (px)")
    ap.add_argument("--image-size", type=int, default=64, help="shard size (px); training runs at this size")
    ap.add_argument("--minutes", type=float, default=1.2,
                    help="training time cap per run (minutes; a safety net, --epochs should bind)")
    ap.add_argument("--epochs", type=int, default=20, help="epochs per run (the cosine schedule spans these)")
    ap.add_argument("--patience", type=int, default=None, help="early-stopping patience (default: none)")
    ap.add_argument("--seeds", type=int, default=3, help="training seeds per (loss, noise): 0..N-1")
    ap.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.2, 0.4],
                    help="extra report noise levels: omission rate = over-call rate = p")
    ap.add_argument("--losses", nargs="+", default=["triplet", "ml2", "ml2plus"])
    ap.add_argument("--cohort-seed", type=int, default=0, help="seed of the synthetic cohort (shared by all levels)")
    ap.add_argument("--work", type=Path, default=None, help="folder for cohorts, models and cached runs")
    ap.add_argument("--fresh", action="store_true", help="discard cached runs under --work")
    ap.add_argument("--json", type=Path, default=RESULTS, help="write the figures here")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(1)
    started = time.perf_counter()
    noises = sorted(set(args.noise))
    work = args.work or Path(os.environ.get("TMPDIR", "/tmp")) / (
        f"radsim-bench-noise-{args.exams}-{args.render_size}-{args.image_size}-s{args.cohort_seed}")
    cache = work / "runs"
    if args.fresh:
        shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    print(f"noise study: {args.exams} exams, rendered {args.render_size} px, trained at {args.image_size} px, "
          f"losses {args.losses}, noise {noises}, {args.seeds} seed(s), <= {args.minutes} min / {args.epochs} epochs "
          f"per run, work {work}", flush=True)
    levels, tests, same, noise_stats = prepare_levels(args, work, noises)
    findings = tests[noises[0]][2]

    from radsim.evaluation import random_embeddings

    _, truth0, _, _ = tests[noises[0]]
    reference = {"random_embedding": score(random_embeddings(len(truth0), 128, seed=0), truth0, findings)}
    runs, n_cached = run_grid(args, work, cache, noises, levels, tests, findings, started)
    table = summarise(runs, args.losses, noises)
    chance = runs[0]["chance"] if runs else {}
    print(f"\n## Label-noise study: test split ({len(truth0)} frontal images) vs the image truth, "
          f"mean ± sd over {args.seeds} training seed(s)\n")
    print(markdown(table, args.losses, noises))
    print("\nchance: " + ", ".join(f"{HEADS[m]} {chance[m]:.3f}" for m in METRICS if m in chance) +
          "; random embeddings: " + ", ".join(f"{HEADS[m]} {reference['random_embedding'][m]:.3f}" for m in METRICS))
    out = {"config": vars(args) | {"work": str(work), "json": str(args.json), "noise": noises},
           "noise_model": "omission_rate = overcall_rate = p in synthetic.generate_cohort (reports only; images, "
                          "patients and splits shared across levels)",
           "test_images": len(truth0), "test_images_identical_across_levels": same,
           "measured_noise": noise_stats, "chance": chance, "reference": reference,
           "table": table, "runs": runs}
    if "ml2" in args.losses and "ml2plus" in args.losses and noises[-1] > noises[0]:
        out.update(ml2plus_verdict(table, args.losses, noises[0], noises[-1]))
    out["wall_seconds"] = round(time.perf_counter() - started, 1)  # of this invocation: small when runs were cached
    out["cached_runs"] = n_cached
    out["train_seconds_total"] = round(sum(r["training"]["seconds"] for r in runs), 1)
    out["load_avg_1m"] = os.getloadavg()[0]
    total = len(args.losses) * len(noises) * args.seeds
    print(f"\nwall time {out['wall_seconds'] / 60:.1f} min ({n_cached} of {total} runs from the cache; "
          f"{out['train_seconds_total'] / 60:.1f} min of training in all); results -> {args.json}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2, default=float) + "\n")
    return 0


def prepare_levels(args: argparse.Namespace, work: Path, noises: list[float]) -> tuple[dict, dict, bool, dict]:
    """One cohort per noise level (same images, patients and splits), its test set and its measured noise."""
    levels = {p: build_level(work / f"noise-{p:g}", args.exams, p, args.render_size, args.image_size,
                             args.cohort_seed) for p in noises}
    tests = {p: test_set(d) for p, d in levels.items()}
    findings = tests[noises[0]][2]
    same = all(tests[p][3] == tests[noises[0]][3] for p in noises)
    if not same:
        print("WARNING: the test images differ across noise levels; the comparison is not like for like", flush=True)
    noise_stats = {f"{p:g}": measured_noise(levels[p], findings) for p in noises}
    print(f"test split: {len(tests[noises[0]][3])} frontal images, identical across levels: {same}")
    print("measured label noise vs image truth (all exams; uncertain counts as absent):")
    for p, s in noise_stats.items():
        print(f"  {float(p):4.0%}: missed positives {s['missed_positive_rate']:.3f}, spurious positives "
              f"{s['spurious_positive_rate']:.3f}, exams with a wrong label set {s['exams_with_wrong_label_set']:.3f}, "
              f"no_finding flipped {s['no_finding_flipped']:.3f}", flush=True)
    return levels, tests, same, noise_stats


def run_grid(args: argparse.Namespace, work: Path, cache: Path, noises: list[float], levels: dict, tests: dict,
             findings: list, started: float) -> tuple[list[dict], int]:
    """Train and score every (noise, loss, seed), reusing runs cached with the same settings."""
    runs: list[dict] = []
    n_cached = 0
    total = len(args.losses) * len(noises) * args.seeds
    for p in noises:
        images, truth, _, _ = tests[p]
        for loss in args.losses:
            for seed in range(args.seeds):
                tag = f"{loss}-noise{p:g}-seed{seed}"
                cached = cache / f"{tag}.json"
                settings = {"minutes": args.minutes, "epochs": args.epochs, "patience": args.patience}
                if cached.exists():
                    r = json.loads(cached.read_text())
                    if r.get("settings") == settings:
                        runs.append(r)
                        n_cached += 1
                        print(f"[{len(runs)}/{total}] {tag}: cached", flush=True)
                        continue
                r = train_and_score(levels[p] / "shards", work / "models" / tag, images, truth, findings, loss=loss,
                                    seed=seed, minutes=args.minutes, epochs=args.epochs, train_size=None,
                                    patience=args.patience)
                r.update({"loss": loss, "noise": p, "seed": seed, "settings": settings})
                cached.write_text(json.dumps(r, indent=1) + "\n")
                runs.append(r)
                t = r["training"]
                print(f"[{len(runs)}/{total}] {tag}: P@10 {r['precision_at_10']:.3f} mAP@R {r['map_at_r']:.3f} "
                      f"NMI {r['nmi']:.3f} AUC {r['normal_auc']:.3f} ({t['epochs_run']} ep, {t['steps']} steps, "
                      f"{t['seconds']:.0f} s, {t['stopped']}; elapsed {(time.perf_counter() - started) / 60:.1f} min)",
                      flush=True)
    return runs, n_cached


def ml2plus_verdict(table: dict, losses: list[str], lo: float, hi: float) -> dict:
    """Does ML2+ degrade less than ML2 from `lo` to `hi` noise? Printed, and returned for the JSON."""
    drops = degradation(table, losses, lo, hi)
    lines, flags = verdict(drops)
    n_less = sum(f["ml2plus_degrades_less"] for f in flags.values())
    n_clear = sum(f["ml2plus_degrades_less"] and f["beyond_2se"] for f in flags.values())
    n_worse_clear = sum((not f["ml2plus_degrades_less"]) and f["beyond_2se"] for f in flags.values())
    if n_clear >= 3 and n_worse_clear == 0:
        summary = "YES: ML2+ degrades less than ML2 on most metrics, beyond 2 standard errors."
    elif n_less >= 3 and n_worse_clear == 0:
        summary = ("NOT ESTABLISHED: ML2+ loses less than ML2 on most metrics, but the gaps are within "
                   "2 standard errors of the seed-to-seed spread at this scale.")
    elif n_worse_clear > 0 and n_less <= 1:
        summary = "NO: ML2+ degrades more than ML2 on at least one metric beyond 2 standard errors."
    else:
        summary = "NO clear difference: ML2+ and ML2 degrade by about the same (mixed, within noise)."
    print(f"\n### Does ML2+ degrade less than ML2 from {lo:.0%} to {hi:.0%}? (change in mean, ± standard error)")
    print("\n".join(lines))
    absolute = {}
    for p in (lo, hi):
        abs_lines, absolute[f"{p:g}"] = levels_at(table, p)
        print(f"\nabsolute level at {p:.0%} (ml2plus - ml2, ± standard error):")
        print("\n".join(abs_lines))
    ahead = [m for m, f in absolute[f"{hi:g}"].items() if f["diff"] > 0 and f["beyond_2se"]]
    behind = [m for m, f in absolute[f"{hi:g}"].items() if f["diff"] < 0 and f["beyond_2se"]]
    summary += (f" At {hi:.0%} ML2+ is clearly ahead of ML2 on {', '.join(HEADS[m] for m in ahead) or 'no metric'}"
                f" and clearly behind on {', '.join(HEADS[m] for m in behind) or 'no metric'} (2 SE).")
    print(f"\nverdict: {summary}")
    return {"degradation": drops, "verdict": {"per_metric": flags, "absolute": absolute, "summary": summary}}

if __name__ == "__main__":
    sys.exit(main())
