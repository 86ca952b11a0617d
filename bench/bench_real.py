"""Real radiographs (../shared/data/nih-dev): the training recipe, with intervals, against baselines (issue 14).

480 NIH ChestX-ray14 films of 131 patients with the data set's text-mined labels. Patient-level
K-fold cross-validation, repeated with new shuffles: for each fold, its patients are the test set;
of the others, 10% (by patient) validate and the rest train. With the default 2 folds a model
trains on half the patients and is scored on the other half, as the held-out check does. Every
recipe trains on the same folds; every fold's test images are embedded and scored as a held-out
set is (all views, `radsim evaluate --split all`). Each metric is the mean over the folds, with a
95% interval that resamples patients within each fold. In the same run: random embeddings, the
untrained encoder (the recipe's initial weights) and chance.

    python -m bench.bench_real                          # 3 x 2 folds, the core recipes (about 8 minutes)
    python -m bench.bench_real --recipes all            # every recipe of the ablation
    python -m bench.bench_real --repeats 1 --recipes default
    python -m bench.bench_real --json results.json

The data is read from ../shared/data/nih-dev (or --nih DIR) and never copied into the project.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from radsim.warehouse.layout import BEST_FILE, SPLITS_FILE

REPO = Path(__file__).resolve().parents[1]
NIH_DIR = REPO.parent / "shared" / "data" / "nih-dev"
# the nih-dev label names → radsim's vocabulary
NIH_TO_RADSIM = {"no_finding": "no_finding", "cardiomegaly": "cardiomegaly", "consolidation": "consolidation",
                 "pleural_effusion": "pleural_effusion", "pneumothorax": "pneumothorax", "nodule_mass": "lung_lesion",
                 "atelectasis": "atelectasis", "oedema": "edema", "hernia": "hiatus_hernia", "emphysema": "emphysema",
                 "fibrosis": "fibrosis", "pleural_thickening": "pleural_other", "infiltrate": "lung_opacity",
                 "pneumonia": "pneumonia"}
BASE = {"image_size": 64, "device": "cpu", "threads": 1}
RECIPES: dict[str, dict] = {
    # TrainConfig's defaults: chest augmentation, early stopping and best-epoch choice on validation P@10
    "default": {},
    "no-augmentation": {"augment": "none"},  # the recipe before issue 14
    "strong-augmentation": {"augment": "strong"},
    "mild-augmentation": {"augment": "mild"},
    # the whole schedule, last epoch kept (what a validation split under 30 patients used to get)
    "last-epoch": {"selection_min_patients": 30},
    "no-augmentation-last-epoch": {"augment": "none", "selection_min_patients": 30},
    "10-epochs-last-epoch": {"epochs": 10, "selection_min_patients": 30},
    "ms-loss": {"loss": "ms"},
    "ml2plus-loss": {"loss": "ml2plus"},
    "lr5e-4": {"lr": 5e-4},
    "frozen-backbone": {"backbone_lr": 0.0},
    "backbone-lr-0.1": {"backbone_lr": 0.1},
}

CORE = ("default", "no-augmentation", "strong-augmentation", "last-epoch", "ms-loss")


def read_nih(nih: Path) -> list[dict]:
    with open(nih / "manifest.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        unknown = set(r["labels"].split(";")) - set(NIH_TO_RADSIM)
        if unknown:
            raise SystemExit(f"nih-dev label(s) {sorted(unknown)} have no radsim finding")
    return rows


def nih_tables(rows: list[dict], nih: Path):
    """The exams table (restricted: raw NIH ids) and a labels-contract table for these rows."""
    import pyarrow as pa

    from radsim.data_contracts import default_vocabulary, load_contract, rows_to_table

    vocab = default_vocabulary()
    exams = pa.table({"exam_id": [r["image_id"] for r in rows], "patient_id": [r["patient_id"] for r in rows],
                      "image_uri": [str(nih / r["file"]) for r in rows], "image_index": [0] * len(rows),
                      "view_position": [r["view_position"] for r in rows]})
    labels = []
    for r in rows:
        present = {NIH_TO_RADSIM[x] for x in r["labels"].split(";") if x}
        values = {f: (1 if f in present else None) for f in vocab.names}
        values["no_finding"] = 1 if "no_finding" in present else 0
        labels.append({"exam_id": r["image_id"], **values, "positive_findings": sorted(f for f in present),
                       "evidence": None, "labeler_version": None})
    contract = load_contract("labels", vocab)
    return exams, contract.validate(rows_to_table(contract, labels), vocab.metadata())


def folds_of(rows: list[dict], k: int, seed: int, repeat: int = 0) -> dict[str, int]:
    """Patients into k folds, a different shuffle for each repeat."""
    patients = sorted({r["patient_id"] for r in rows},
                      key=lambda p: hashlib.sha256(f"{seed}:{repeat}:{p}".encode()).hexdigest())
    return {p: i % k for i, p in enumerate(patients)}


def shard_fold(rows: list[dict], nih: Path, fold: int, folds: dict[str, int], out: Path, seed: int) -> Path:
    """Shards of all rows, with this fold's patients in test and 10% of the others in val."""
    from radsim.data_contracts import demo_keyer
    from radsim.imaging.shards import ShardSite, write_shards
    from radsim.imaging.splits import write_splits

    keyer = demo_keyer()
    splits = {}
    others = sorted(
        {p for p, f in folds.items() if f != fold}, key=lambda p: hashlib.sha256(f"v{seed}{p}".encode()).digest()
    )
    n_val = max(1, round(0.1 * len(others)))
    for p, f in folds.items():
        splits[keyer.patient_key(p)] = "test" if f == fold else ("val" if p in others[:n_val] else "train")
    out.mkdir(parents=True)
    write_splits(out / SPLITS_FILE, splits, keyer.key_id)
    exams, labels = nih_tables(rows, nih)
    write_shards(exams, labels, out, keyer=keyer, image_size=64, progress=False,
                 site=ShardSite(quarantine_path=out.parent / f"quarantine-{fold}.parquet"))
    return out


def test_split(shards: Path):
    """The fold's test images (all views) with labels and patient keys."""
    from radsim.model.data import load_split, read_shard_info

    info = read_shard_info(shards)
    return info, load_split(info, "test", views=None)


def _scores(emb: np.ndarray, labels: np.ndarray, normal_index: int):
    from radsim.evaluation import RetrievalSpec, retrieval_scores

    return retrieval_scores(emb, labels, RetrievalSpec(ks=(10,), ndcg_ks=(), finding_k=None, normal_index=normal_index,
                                                       with_map=True), per_query=True)


def split_mean_intervals(parts: list[tuple], *, replicates: int, seed: int) -> dict[str, dict]:
    """Each metric as the mean over evaluation splits, with a 95% interval resampling patients within each split.

    Splits are not pooled: a neighbour vote's level depends on its split's make-up, so pooling
    votes across splits would reward differences between splits, not a good metric.
    """
    from radsim.evaluation import roc_auc
    from radsim.evaluation.intervals import Interval, bias_corrected, group_draws, percentile_bounds, weighted_auc

    def stats(s, g, mult) -> dict[str, float]:
        def mean(name):
            kept = s.per_query[name]
            w = mult[g[kept.items]]
            return float((w * kept.values).sum() / w.sum()) if w.sum() else float("nan")

        return {"precision_at_10": mean("precision_at_10"), "map_at_r": mean("map_at_r"),
                "normal_auc": weighted_auc(s.votes.values, s.vote_truth, mult[g[s.votes.items]])}

    per_split, draws = [], []
    for i, (s, groups) in enumerate(parts):
        _, g = np.unique(np.asarray([str(x) for x in groups]), return_inverse=True)
        per_split.append({**stats(s, g, np.ones(g.size)), "normal_auc": float(roc_auc(s.votes.values, s.vote_truth)),
                          "precision_at_chance": s.precision_at_k_chance[10], "map_at_r_chance": s.map_at_r_chance})
        boot = [stats(s, g, m) for m in group_draws(int(g.max()) + 1, replicates, seed + 7919 * i)]
        draws.append(boot)
    out = {}
    for name in per_split[0]:
        point = float(np.nanmean([d[name] for d in per_split]))
        if name.endswith("_chance"):  # the random-ranking expectation: a level, not an estimate
            out[name] = {"value": point, "ci_low": None, "ci_high": None,
                         "per_split": [round(d[name], 4) for d in per_split]}
            continue
        boot = np.array([np.nanmean([draws[i][r][name] for i in range(len(parts))]) for r in range(replicates)])
        interval = bias_corrected(point, boot) if name == "normal_auc" else Interval(point, *percentile_bounds(boot))
        out[name] = interval.as_dict()
        out[name]["per_split"] = [round(d[name], 4) for d in per_split]
    return out


def run(args: argparse.Namespace) -> dict:
    import torch

    from radsim.evaluation import random_embeddings
    from radsim.model.checkpoint import read_checkpoint
    from radsim.model.embed import embed_images
    from radsim.model.encoders import build_encoder
    from radsim.model.train import train_embedding_model

    torch.set_num_threads(1)
    nih = Path(args.nih)
    rows = read_nih(nih)
    recipes = [r for r in args.recipes.split(",")] if args.recipes != "all" else list(RECIPES)
    unknown = sorted(set(recipes) - set(RECIPES))
    if unknown:
        raise SystemExit(f"unknown recipe(s) {', '.join(unknown)}; choose from {', '.join(RECIPES)}")
    work = Path(tempfile.mkdtemp(prefix="radsim-bench-real-"))
    per: dict[str, list] = {name: [] for name in [*recipes, "untrained encoder", "random embeddings"]}
    timing: dict[str, float] = {name: 0.0 for name in recipes}
    try:
        for repeat in range(args.repeats):
            folds = folds_of(rows, args.folds, args.seed, repeat)
            for fold in range(args.folds):
                split = f"r{repeat}f{fold}"
                shards = shard_fold(rows, nih, fold, folds, work / split / "shards", args.seed)
                info, test = test_split(shards)
                normal = info.findings.index("no_finding")
                for name in recipes:
                    t0 = time.perf_counter()
                    result = train_embedding_model(shards, work / split / name, progress=False,
                                                   seed=args.seed, **{**BASE, **RECIPES[name]})
                    timing[name] += time.perf_counter() - t0
                    card = result.card
                    model = build_encoder(card.backbone, embedding_dim=card.embedding_dim)
                    model.load_state_dict(read_checkpoint(result.model_dir / BEST_FILE)["state_dict"])
                    emb = embed_images(model, test.float_images(), device="cpu")
                    per[name].append((_scores(emb, test.labels, normal), test.groups))
                    print(f"{split} {name}: P@10 {per[name][-1][0].precision_at_k[10]:.3f}, "
                          f"AUC {per[name][-1][0].normal_auc:.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
                torch.manual_seed(args.seed)
                untrained = build_encoder("small", embedding_dim=128)
                per["untrained encoder"].append((_scores(embed_images(untrained, test.float_images(), device="cpu"),
                                                         test.labels, normal), test.groups))
                rand = random_embeddings(len(test), 128, seed=args.seed + 100 * repeat + fold)
                per["random embeddings"].append((_scores(rand, test.labels, normal), test.groups))
                shutil.rmtree(work / split, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = {
        name: split_mean_intervals(parts, replicates=args.replicates, seed=args.seed) for name, parts in per.items()
    }
    patients = len({r["patient_id"] for r in rows})
    return {
        "folds": args.folds,
        "repeats": args.repeats,
        "images": len(rows),
        "patients": patients,
        "recipes": {k: RECIPES[k] for k in recipes},
        "base": BASE,
        "results": table,
        "train_seconds": timing,
    }


def report(doc: dict) -> str:
    res = doc["results"]
    chance = res["random embeddings"]["precision_at_chance"]["value"]
    lines = [f"nih-dev, {doc['images']} images of {doc['patients']} patients, {doc['repeats']} x {doc['folds']}-fold "
             f"patient-level cross-validation; each value is the mean over the {doc['repeats'] * doc['folds']} "
             f"held-out folds, its 95% interval resamples patients within each fold", "",
             f"{'':<28} {'P@10':>22} {'mAP@R':>22} {'normal AUC':>22}"]

    def cell(name: str, metric: str) -> str:
        d = res[name].get(metric)
        return "n/a" if d is None or d["value"] is None else f"{d['value']:.3f} [{d['ci_low']:.3f}, {d['ci_high']:.3f}]"

    for name in res:
        lines.append(f"{name:<28} {cell(name, 'precision_at_10'):>22} {cell(name, 'map_at_r'):>22} "
                     f"{cell(name, 'normal_auc'):>22}")
    lines.append(f"{'chance':<28} {chance:>22.3f} {res['random embeddings']['map_at_r_chance']['value']:>22.3f} "
                 f"{0.5:>22.3f}")
    best = max((n for n in doc["recipes"]), key=lambda n: res[n]["normal_auc"]["value"] or 0)
    rnd = res["random embeddings"]
    lines += [
        "",
        f"best recipe by AUC: {best}; P@10 {res[best]['precision_at_10']['value']:.3f} vs random "
        f"{rnd['precision_at_10']['value']:.3f} "
        f"(+{res[best]['precision_at_10']['value'] - rnd['precision_at_10']['value']:.3f})"
        f" and chance {chance:.3f}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nih", default=str(NIH_DIR), help="the nih-dev folder (default: ../shared/data/nih-dev)")
    parser.add_argument("--folds", type=int, default=2, help="patient-level folds per repeat (default: 2, so a "
                        "model trains on half the patients and is scored on the other half, as the held-out check)")
    parser.add_argument("--repeats", type=int, default=3, help="repeated splits, each with its own shuffle")
    parser.add_argument(
        "--recipes",
        default=",".join(CORE),
        help=f"comma-separated, or all; from: {', '.join(RECIPES)} (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--replicates", type=int, default=1000)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    if not (Path(args.nih) / "manifest.csv").exists():
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
