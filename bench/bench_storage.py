"""Cost of an fsspec warehouse: the pipeline on memory:// (through the local mirror) vs on the local disk.

Both runs go through the `pipeline` flow on the same synthetic inbox into fresh warehouses:
one with the inbox and warehouse as local folders (the baseline), one with both on
`memory://`, where the run pulls the inbox into a mirror, works there, and pushes the
warehouse back (radsim.warehouse.storage). memory:// has no network, so the ratio is the
mirror's own overhead (listing, copying, fingerprinting); on s3 or gs add the transfer time of
the bytes reported (pulls and pushes are batched `get`/`put` calls, which s3fs and gcsfs run
concurrently). One memory:// artefact inflates the ratio as the cohort grows: its `info()` scans
the whole store, and fsspec's per-file `get_file` calls it, so fetching n files costs O(n^2)
there (measured: 4,099 inbox files of 2,000 exams pulled in ~8 s, re-pulled unchanged in 0.2 s).
A no-op rerun of each (the ledger says "nothing new") shows what an
unchanged remote warehouse costs per scheduled run. Prefect's one-off start-up is excluded.

    python -m bench.bench_storage                  # 500 exams
    python -m bench.bench_storage --exams 2000

Target: memory:// / local <= 1.25 for a full run.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

TARGET = 1.25
# a 5-step model cannot pass the promotion gates: forced, as bench_pipeline does, so both paths publish
TINY = {"imaging.image_size": 64, "model.image_size": 64, "model.max_steps": 5, "model.batch_size": 32,
        "model.force_promote": True}


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exams", type=int, default=500)
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="radsim-bench-storage-"))
    os.environ.setdefault("PREFECT_HOME", str(work / "prefect"))
    os.environ["RADSIM_CACHE"] = str(work / "cache")
    import fsspec

    from radsim.flows.config import resolve_config
    from radsim.flows.pipeline import ephemeral_run, pipeline
    from radsim.synthetic import generate_cohort

    cfg = resolve_config(TINY, environ={})
    cohort = generate_cohort(work / "cohort", exams=args.exams, seed=4, image_size=64, progress=False)
    warm = generate_cohort(work / "warm", exams=60, seed=5, image_size=64, progress=False)
    fs = fsspec.filesystem("memory")
    root = f"memory://bench-{uuid.uuid4().hex[:8]}"
    fs.put(str(cohort.inbox), f"{root}/inbox", recursive=True)  # the site's upload, not timed

    def run(inbox: str, warehouse: str):
        return pipeline(inbox, warehouse, config=cfg, demo_key=True, quiet=True)

    with ephemeral_run():
        startup, _ = timed(run, str(warm.inbox), str(work / "warm-wh"))
        local_s, local = timed(run, str(cohort.inbox), str(work / "local-wh"))
        remote_s, remote = timed(run, f"{root}/inbox", f"{root}/wh")
        local_noop_s, _ = timed(run, str(cohort.inbox), str(work / "local-wh"))
        remote_noop_s, noop = timed(run, f"{root}/inbox", f"{root}/wh")
    assert remote.published_rows == local.published_rows > 0 and noop.nothing_new, (
        f"published {remote.published_rows} rows through memory:// and {local.published_rows} locally; "
        f"no-op rerun nothing_new={noop.nothing_new}")
    pushed = sum(info["size"] for info in fs.find(f"{root}/wh", detail=True).values())
    figures = {
        "exams": args.exams, "published_rows": remote.published_rows,
        "prefect_warmup_s": round(startup, 2), "local_s": round(local_s, 2), "memory_s": round(remote_s, 2),
        "ratio_memory_over_local": round(remote_s / local_s, 3), "target": TARGET,
        "noop_local_s": round(local_noop_s, 2), "noop_memory_s": round(remote_noop_s, 2),
        "warehouse_bytes_pushed": pushed, "load_avg_1min": round(os.getloadavg()[0], 2),
    }
    print(f"pipeline on {args.exams} exams ({remote.published_rows} rows published), Prefect warm:")
    print(f"  local folders {local_s:.1f} s, memory:// through the mirror {remote_s:.1f} s: "
          f"ratio {remote_s / local_s:.3f} (target <= {TARGET})")
    print(f"  no-op rerun: local {local_noop_s:.2f} s, memory:// {remote_noop_s:.2f} s; "
          f"warehouse pushed {pushed / 1e6:.1f} MB")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    fs.rm(root, recursive=True)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
