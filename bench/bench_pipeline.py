"""Orchestration overhead of the `pipeline` flow: through Prefect vs the same functions called directly.

Both paths run the same plain functions on the same synthetic inbox into fresh warehouses:
ingest the inbox → ledger → label → shard → train (capped steps) → register/promote → embed →
publish → ledger. The Prefect path is `radsim.flows.pipeline.pipeline` (nested label, shard
and train flows, tasks, artifacts) in ephemeral mode; the one-off Prefect start-up (first flow
call in a fresh PREFECT_HOME) is measured separately and excluded. Like `radsim run`, the
Prefect path runs inside `ephemeral_run()` (no flow heartbeats without a server). A third number is the
no-op rerun through Prefect on the unchanged inbox (the ledger says "nothing new").

    python -m bench.bench_pipeline                 # 2,000 exams (several minutes of CPU)
    python -m bench.bench_pipeline --exams 200     # quicker

Target: prefect / direct <= 1.15 excluding start-up.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from radsim.synthetic.config import MIN_IMAGE_SIZE
from radsim.warehouse.layout import EXAMS_FILE, LABELS_FILE

TARGET = 1.15
TRAINING = {"image_size": 64, "max_steps": 5, "batch_size": 32}


def direct_pipeline(inbox: Path, warehouse: Path, image_size: int, workers: int) -> int:
    """The pipeline's stages as plain calls, no Prefect: the baseline."""
    import pyarrow.parquet as pq

    from radsim.data_contracts import demo_keyer, load_contract, write_parquet_atomic
    from radsim.data_contracts.vocabulary import default_vocabulary
    from radsim.imaging.shards import write_shards
    from radsim.model.promotion import promote_through_gates
    from radsim.model.publish import publish
    from radsim.model.train import train_embedding_model
    from radsim.nlp.runner import label_file
    from radsim.warehouse.inbox import ingest_inbox
    from radsim.warehouse.labels import merge_labels
    from radsim.warehouse.ledger import (
        diff,
        fingerprints,
        read_ledger,
        update_ledger,
        write_ledger,
    )
    from radsim.warehouse.registry import register_model

    keyer = demo_keyer()
    restricted = warehouse / "restricted"
    restricted.mkdir(parents=True)
    ingested = ingest_inbox(inbox)
    write_parquet_atomic(ingested.exams, restricted / EXAMS_FILE, load_contract("exams"))
    ledger = read_ledger(warehouse)
    prints = fingerprints(ingested.exams)
    todo = diff(ledger, prints)
    summary = label_file(restricted / EXAMS_FILE, restricted / "batch-labels.parquet", progress=False)
    merge_labels(restricted / LABELS_FILE, pq.read_table(summary.labels_path), todo.to_label, default_vocabulary())
    write_shards(restricted / EXAMS_FILE, restricted / LABELS_FILE, warehouse / "shards", keyer=keyer,
                 image_size=image_size, workers=workers, progress=False)
    trained = train_embedding_model(warehouse / "shards", warehouse / "models" / "training", progress=False,
                                    **TRAINING)
    model_dir = register_model(trained.model_dir, warehouse / "models")
    # a 5-step model: the gates refuse it
    promote_through_gates(warehouse / "models", model_dir.name, force="bench_pipeline")
    published, _ = publish(model_dir, warehouse / "shards", warehouse / "published")
    write_ledger(update_ledger(ledger, prints, keyer, label_status=dict.fromkeys(prints, "done"),
                               shard_status=dict.fromkeys(prints, "done"), published_version=model_dir.name,
                               published=list(prints)), warehouse)
    return published.rows


def prefect_pipeline(inbox: Path, warehouse: Path, args: argparse.Namespace) -> tuple[float, float, object]:
    """The pipeline flow on the same cohort, then a no-op rerun: (seconds, rerun seconds, result)."""
    from radsim.flows.config import resolve_config
    from radsim.flows.pipeline import ephemeral_run, pipeline

    cfg = resolve_config({"imaging.image_size": args.image_size, "runner.workers": args.workers,
                          "runner.task_runner": args.runner, "model.force_promote": True,  # as the direct path
                          **{f"model.{k}": v for k, v in TRAINING.items()}}, None, environ={})
    with ephemeral_run():  # as `radsim run` does: no heartbeats without a server
        t = time.perf_counter()
        result = pipeline(str(inbox), str(warehouse), config=cfg, demo_key=True, quiet=True)
        prefect_s = time.perf_counter() - t
        t = time.perf_counter()
        again = pipeline(str(inbox), str(warehouse), config=cfg, demo_key=True, quiet=True)
        rerun_s = time.perf_counter() - t
    assert again.nothing_new

    return prefect_s, rerun_s, result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exams", type=int, default=2000)
    ap.add_argument("--image-size", type=int, default=64, help="synthetic and shard image size (default 64)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runner", choices=("threads", "processes"), default="threads",
                    help="the Prefect path's task runner for decoding (write_shards uses processes)")
    ap.add_argument("--json", action="store_true", help="print one JSON line instead of text")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="radsim-bench-pipeline-"))
    os.environ["PREFECT_HOME"] = str(work / "prefect-home")  # fresh: start-up measured below
    os.environ.pop("PREFECT_API_URL", None)
    from radsim.flows.prefect_env import configure_prefect

    configure_prefect()
    from radsim.synthetic import generate_cohort

    t = time.perf_counter()
    cohort = generate_cohort(work / "cohort", exams=args.exams, seed=1, image_size=max(MIN_IMAGE_SIZE, args.image_size),
                             progress=False)
    synth_s = time.perf_counter() - t

    t = time.perf_counter()
    rows_direct = direct_pipeline(cohort.inbox, work / "wh-direct", args.image_size, args.workers)
    direct_s = time.perf_counter() - t

    from prefect import flow

    @flow(name="bench-start-up")
    def _noop() -> int:
        return 1

    t = time.perf_counter()
    _noop()
    startup_s = time.perf_counter() - t

    prefect_s, rerun_s, result = prefect_pipeline(cohort.inbox, work / "wh-prefect", args)
    out = {"exams": args.exams, "rows_published": result.published_rows, "rows_direct": rows_direct,
           "synth_s": round(synth_s, 2), "direct_s": round(direct_s, 2), "prefect_s": round(prefect_s, 2),
           "prefect_startup_s": round(startup_s, 2), "noop_rerun_s": round(rerun_s, 2),
           "ratio": round(prefect_s / direct_s, 3), "target": TARGET, "work": str(work)}
    if args.json:
        print(json.dumps(out))
    else:
        print(
            f"pipeline on {args.exams} exams ({result.published_rows} images published; cohort made in {synth_s:.1f} s)"
        )
        print(f"  direct (plain functions):   {direct_s:7.2f} s")
        print(f"  through Prefect:            {prefect_s:7.2f} s   ratio {out['ratio']:.3f} (target <= {TARGET})")
        print(f"  Prefect start-up (one-off): {startup_s:7.2f} s   (excluded)")
        print(f"  no-op rerun (ledger):       {rerun_s:7.2f} s")
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    return 0 if out["ratio"] <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
