"""Training benchmarks: shard-fed vs in-memory images/s, and the demo-level acceptance run.

(a) `--mode feed` (default): the same model, loss, sampler and number of steps, fed
    - mem:    from a uint8 tensor already in memory (the baseline; loading not timed)
    - shards: by the training loop's default feeder, decoding the train split from the
              shards into memory first (that decode IS timed)
    - stream: by the webdataset streaming feeder (decodes every sample each epoch)
    and prints images/s and the ratios shards/mem and stream/mem (target >= 0.9).
(b) `--mode demo`: a synthetic cohort (2,000 exams, 128 px), `train_embedding_model` with
    the defaults (ML2, small CNN, CPU) for at most --minutes, then on the TEST split
    against the image truth (truth.parquet keyed through the demo key): P@10 (target
    >= 0.80 and >= chance + 0.25) and normal-vs-abnormal AUC (>= 0.90), next to the
    untrained-encoder and random-embedding baselines.

    python -m bench.bench_train --mode feed --n-exams 600 --image-size 128 --steps 60
    python -m bench.bench_train --mode demo --n-exams 2000 --image-size 128 --minutes 5
    python -m bench.bench_train --mode demo --render-size 512 --image-size 256 --train-size 128  # as radsim demo
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from radsim.warehouse.layout import MANIFEST_FILE, TRUTH_FILE

if __package__ in (None, ""):  # `python bench/bench_train.py`: make `bench.cohorts` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_cohort(work: Path, n_exams: int, image_size: int, render_size: int, seed: int = 0) -> Path:
    """synth -> ingest -> label -> shard (demo key); reused when WORK already holds it."""
    from bench.cohorts import label_and_shard
    from radsim.synthetic import generate_cohort

    shards = work / "shards"
    if (shards / MANIFEST_FILE).exists():
        return shards
    t0 = time.perf_counter()
    cohort = generate_cohort(work / "cohort", exams=n_exams, seed=seed, image_size=render_size, progress=False,
                             overwrite=True)
    label_and_shard(cohort, work, shards, image_size, workers=2)
    print(f"cohort: {n_exams} exams rendered at {render_size} px, sharded at {image_size} px in "
          f"{time.perf_counter() - t0:.1f} s ({work})", flush=True)
    return shards


# ------------------------------------------------------------------------------ (a) feed
def _train_steps(feeder_epochs, steps: int, seed: int, batch_size: int) -> float:
    """Run `steps` optimiser steps over the feeder's epochs; returns seconds (model build not timed)."""
    import torch

    from radsim.model.distributed import DistContext
    from radsim.model.encoders import build_encoder
    from radsim.model.losses import build_loss
    from radsim.model.train_core import cosine_with_warmup, optimizer_step, resolve_device

    torch.manual_seed(seed)
    setup = resolve_device("cpu")
    model = setup.prepare(build_encoder("small"))
    loss_fn = build_loss("ml2")
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    sched = cosine_with_warmup(opt, steps, 5)
    ctx = DistContext()
    done, t0 = 0, time.perf_counter()
    epoch = 0
    while done < steps:
        for batch in feeder_epochs(epoch):
            optimizer_step(model, loss_fn, opt, sched, [batch], setup, step=done + 1, clip_norm=1.0, ctx=ctx)
            done += 1
            if done >= steps:
                break
        epoch += 1
    return time.perf_counter() - t0


def bench_feed(shards: Path, steps: int, batch_size: int, seed: int = 0, repeats: int = 2) -> dict:
    from radsim.model.data import load_split, make_sampler, read_shard_info
    from radsim.model.feeders import MemoryFeeder, StreamFeeder

    info = read_shard_info(shards)
    pre = load_split(info, "train")  # the in-memory baseline's images, loaded before timing
    images = steps * batch_size
    results: dict[str, list[float]] = {"mem": [], "shards": [], "stream": []}
    for _ in range(repeats):  # interleaved, so a burst of load on the machine hits all three alike
        mem = MemoryFeeder(pre, make_sampler(pre.labels, batch_size, seed=seed))
        results["mem"].append(images / _train_steps(mem.epoch, steps, seed, batch_size))

        t0 = time.perf_counter()
        data = load_split(read_shard_info(shards), "train")
        load_s = time.perf_counter() - t0
        fed = MemoryFeeder(data, make_sampler(data.labels, batch_size, seed=seed))
        results["shards"].append(images / (load_s + _train_steps(fed.epoch, steps, seed, batch_size)))

        stream = StreamFeeder(info, pre.labels, batch_size, seed=seed)
        results["stream"].append(images / _train_steps(stream.epoch, steps, seed, batch_size))
    best = {k: max(v) for k, v in results.items()}
    out = {"train_images": len(pre), "image_size": info.image_size, "steps": steps, "batch_size": batch_size,
           "images_per_s": {k: round(v, 1) for k, v in best.items()},
           "ratio_shards_vs_mem": round(best["shards"] / best["mem"], 3),
           "ratio_stream_vs_mem": round(best["stream"] / best["mem"], 3)}
    print(f"feed: {len(pre)} train images at {info.image_size} px, {steps} steps x batch {batch_size} "
          f"(best of {repeats})")
    for k, v in best.items():
        print(f"  {k:7s} {v:8.1f} images/s")
    print(f"  shards/mem {out['ratio_shards_vs_mem']:.3f}   stream/mem {out['ratio_stream_vs_mem']:.3f}   "
          "(target >= 0.9)")
    return out


# ------------------------------------------------------------------------------ (b) demo
def truth_matrix(shards: Path, truth_path: Path, split: str = "test") -> tuple[list[int], np.ndarray, list[str]]:
    """Row positions of the split's frontal samples in manifest order, and their image-truth label matrix."""
    import pyarrow.parquet as pq

    from radsim.data_contracts import demo_keyer
    from radsim.imaging.reader import FRONTAL
    from radsim.model.data import read_shard_info

    info = read_shard_info(shards)
    keyer = demo_keyer()
    truth = pq.read_table(truth_path).to_pylist()
    by_key = {keyer.exam_key(r["exam_id"]): [np.nan if r[f] is None else float(r[f]) for f in info.findings]
              for r in truth}
    manifest = pq.read_table(shards / MANIFEST_FILE).to_pylist()
    rows = [i for i, r in enumerate(manifest) if r["split"] == split and r["view_position"] in FRONTAL]
    labels = np.array([by_key[manifest[i]["exam_key"]] for i in rows], dtype=np.float32)
    return rows, labels, info.findings


def split_images(shards: Path, rows: list[int]):
    import torch

    from radsim.imaging.reader import iter_manifest_samples

    wanted = set(rows)
    out = [s["image"] for i, s in enumerate(iter_manifest_samples(shards)) if i in wanted]
    return torch.stack(out)


def bench_demo(work: Path, shards: Path, minutes: float, epochs: int | None, seed: int = 0, threads: int | None = None,
               train_size: int | None = None) -> dict:
    import torch

    from radsim.evaluation import RetrievalSpec, random_embeddings, retrieval_scores
    from radsim.model.checkpoint import load_model
    from radsim.model.embed import embed_images
    from radsim.model.encoders import build_encoder
    from radsim.model.train import DEFAULTS, train_embedding_model

    model_dir = work / "model"
    shutil.rmtree(model_dir, ignore_errors=True)
    kw = {"epochs": epochs} if epochs else {}
    result = train_embedding_model(shards, model_dir, max_minutes=minutes, seed=seed, device="cpu", progress=True,
                                   num_threads=threads, image_size=train_size, **kw)
    rows, truth, findings = truth_matrix(shards, work / "cohort" / TRUTH_FILE)
    images = split_images(shards, rows)
    if result.card.image_size != images.shape[-1]:
        from radsim.model.data import resize_images

        images = resize_images((images * 255).round().to(torch.uint8), result.card.image_size).float() / 255
    trained = load_model(model_dir).model
    torch.manual_seed(seed)
    untrained = build_encoder(result.card.backbone, embedding_dim=result.card.embedding_dim)

    def score(emb: np.ndarray) -> dict:
        s = retrieval_scores(emb, truth, RetrievalSpec(ks=(10,), ndcg_ks=(), finding_k=None,
                                                       normal_index=findings.index("no_finding")))
        return {"precision_at_10": round(s.precision_at_k[10], 4), "chance": round(s.precision_at_k_chance[10], 4),
                "map_at_r": round(s.map_at_r, 4), "normal_auc": round(s.normal_auc, 4)}

    table = {
        "trained": score(embed_images(trained, images, device="cpu")),
        "untrained_encoder": score(embed_images(untrained, images, device="cpu")),
        "random_embedding": score(random_embeddings(len(rows), result.card.embedding_dim, seed=seed)),
    }
    t = table["trained"]
    verdict = {"p10_ge_0.80": t["precision_at_10"] >= 0.80,
               "p10_ge_chance_plus_0.25": t["precision_at_10"] >= t["chance"] + 0.25,
               "normal_auc_ge_0.90": t["normal_auc"] >= 0.90}
    print(f"\ndemo acceptance: test split, {len(rows)} frontal images, against the image truth "
          f"(training: {result.card.training.get('train_seconds')} s, {result.images_per_s:.0f} images/s, "
          f"{result.steps} steps, stopped: {result.stopped}; defaults {DEFAULTS})")
    print(f"  {'':18s} {'P@10':>7s} {'chance':>7s} {'mAP@R':>7s} {'normAUC':>8s}")
    for name, v in table.items():
        print(
            f"  {name:18s} {v['precision_at_10']:7.3f} {v['chance']:7.3f} {v['map_at_r']:7.3f} {v['normal_auc']:8.3f}"
        )
    print("  targets: " + ", ".join(f"{k} {'MET' if ok else 'NOT MET'}" for k, ok in verdict.items()))
    return {"test": table, "targets": verdict, "model_version": result.model_version,
            "training": {k: result.card.training.get(k) for k in ("train_seconds", "images_per_s", "steps", "stopped",
                                                                  "epochs", "lr", "batch_size", "num_threads")},
            "validation": result.card.metrics}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=("feed", "demo"), default="feed")
    ap.add_argument("--n-exams", type=int, default=None, help="cohort size (feed: 600, demo: 2000)")
    ap.add_argument("--image-size", type=int, default=128, help="shard size (and training size unless --train-size)")
    ap.add_argument("--train-size", type=int, default=None, help="demo: train at this size (resized on the fly)")
    ap.add_argument("--render-size", type=int, default=None, help="synthetic render size (default: --image-size)")
    ap.add_argument("--steps", type=int, default=60, help="feed: optimiser steps per measurement")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--minutes", type=float, default=5.0, help="demo: training time budget")
    ap.add_argument("--epochs", type=int, default=None, help="demo: epochs (default: the training default)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: robust on a shared machine)")
    ap.add_argument("--work", type=Path, default=None, help="folder for the cohort (kept and reused)")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    n = args.n_exams or (600 if args.mode == "feed" else 2000)
    render = args.render_size or args.image_size
    work = args.work or Path(os.environ.get("TMPDIR", "/tmp")) / f"radsim-bench-train-{n}-{render}-{args.image_size}"
    shards = make_cohort(work, n, args.image_size, render)
    if args.mode == "feed":
        out = bench_feed(shards, args.steps, args.batch_size)
    else:
        out = bench_demo(work, shards, args.minutes, args.epochs, threads=args.threads, train_size=args.train_size)
    out.update({"mode": args.mode, "n_exams": n, "threads": args.threads, "load_avg_1m": os.getloadavg()[0]})
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
