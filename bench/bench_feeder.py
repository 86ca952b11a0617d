"""The streaming feeder's input rate against plain N-process PNG decoding of the same shards (issue 14).

Baseline: N processes, each reading its share of the shards and decoding the PNGs the feeder
delivers (train split, labelled, frontal), as fast as they can: the ceiling for any feeder on N
cores, best of 3. Feeder: `StreamFeeder` with N DataLoader
workers, epochs of --epoch-samples images (resampled from the shards) consumed as fast as they
come (no model), each timed whole with its workers' start-up, best of 3. Same synthetic shards.

    python -m bench.bench_feeder                   # 3,000 exams at 128 px, 2 workers
    python -m bench.bench_feeder --exams 1000 --size 64

Target: feeder images/s >= 0.8 x the N-process decode rate at 2 workers.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from radsim.warehouse.layout import EXAMS_FILE, LABELS_FILE

TARGET = 0.8


def _decode_shard(path: str) -> int:
    """Decode the PNGs of one shard that the feeder would deliver (train split, labelled, frontal)."""
    from radsim.imaging.normalise import decode_png
    from radsim.imaging.reader import FRONTAL, _selected
    from radsim.imaging.tarshard import iter_tar_samples

    n = 0
    for sample in iter_tar_samples(Path(path)):
        if _selected(sample, split="train", labelled_only=True, views=FRONTAL):
            decode_png(sample["png"])
            n += 1
    return n


def decode_rate(shards: list[Path], workers: int) -> float:
    ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
    with ctx.Pool(workers) as pool:
        pool.map(_decode_shard, [str(shards[0])])  # start-up outside the timing
        t0 = time.perf_counter()
        n = sum(pool.map(_decode_shard, [str(p) for p in shards]))
        return n / (time.perf_counter() - t0)


def feeder_rate(shard_dir: Path, workers: int, batch_size: int, epochs: int,
                epoch_samples: int | None = None) -> tuple[float, float]:
    """(images/s of the best epoch, seconds of the first, cold epoch).

    Every epoch starts its DataLoader workers; the first also starts the forkserver, which then
    preloads the workers' modules for all later epochs. Each epoch is timed whole, start-up in.
    """
    from radsim.model.data import read_shard_info, split_labels
    from radsim.model.feeders import StreamFeeder

    info = read_shard_info(shard_dir)
    feeder = StreamFeeder(info, split_labels(info, "train"), batch_size, seed=0, workers=workers)
    if epoch_samples:  # the stream resamples shards, so an epoch can be as long as a large cohort's
        feeder.n_batches = max(feeder.n_batches, epoch_samples // batch_size)
    rates, cold = [], 0.0
    for epoch in range(epochs):
        t0 = time.perf_counter()
        n = sum(int(x.shape[0]) for x, _ in feeder.epoch(epoch))
        seconds = time.perf_counter() - t0
        cold = cold or seconds
        rates.append(n / seconds)
    return max(rates), cold


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exams", type=int, default=3000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--epoch-samples", type=int, default=20_000,
                        help="images per feeder epoch (resampled from the shards), so the per-epoch worker start-up "
                        "weighs as it does on a real cohort rather than on a tiny one")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(1)
    from radsim.data_contracts import demo_keyer, load_contract, write_parquet_atomic
    from radsim.data_contracts.ingest import ingest_manifests
    from radsim.imaging.shards import write_shards
    from radsim.nlp.runner import label_file
    from radsim.synthetic import generate_cohort

    root = Path(tempfile.mkdtemp(prefix="radsim-bench-feeder-"))
    try:
        cohort = generate_cohort(root / "cohort", exams=args.exams, seed=1, image_size=args.size, progress=False)
        write_parquet_atomic(ingest_manifests([cohort.exams_path]).exams, root / EXAMS_FILE, load_contract("exams"))
        label_file(root / EXAMS_FILE, root / LABELS_FILE, progress=False)
        shards = root / "shards"
        write_shards(root / EXAMS_FILE, root / LABELS_FILE, shards, keyer=demo_keyer(), image_size=args.size,
                     maxcount=max(100, args.exams // (4 * args.workers)), workers=args.workers, progress=False)
        tars = sorted(shards.glob("shard-*.tar"))
        base = max(decode_rate(tars, args.workers) for _ in range(args.epochs))
        fed, cold = feeder_rate(shards, args.workers, args.batch_size, args.epochs, args.epoch_samples)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    ratio = fed / base
    doc = {"exams": args.exams, "size": args.size, "workers": args.workers, "shards": len(tars),
           "epoch_samples": args.epoch_samples,
           "decode_images_per_s": round(base, 1), "feeder_images_per_s": round(fed, 1), "ratio": round(ratio, 3),
           "first_epoch_s": round(cold, 2)}
    print(json.dumps(doc))
    print(f"feeder {fed:.0f} images/s vs {args.workers}-process PNG decode {base:.0f} images/s: ratio {ratio:.2f} "
          f"(target >= {TARGET}); the first, cold epoch took {cold:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
