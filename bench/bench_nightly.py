"""A nightly run on an unchanged inbox: its cost must not grow with the archive (issue 13).

Builds inboxes of N exams (copies of one synthetic cohort under new exam ids), runs `radsim run`
once on each (label, shard, train a few steps, publish), then times a second `radsim run` on the
unchanged inbox, as the scheduler would start it each night: a new process. A Python audit hook in
that process counts the inbox files it opens. The fixed cost of starting Prefect is measured in
the same run the same way: a new process that runs one empty flow in ephemeral mode.

    python -m bench.bench_nightly                    # 1,000 and 8,000 exams (several minutes)
    python -m bench.bench_nightly --sizes 200,1600   # quicker

Targets: inbox files opened <= 5% of the inbox's files; (no-op wall - Prefect start-up) grows
<= 1.5x from the smallest to the largest size.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MAX_OPENED = 0.05
MAX_GROWTH = 1.5

# `radsim run` in a new process, with an audit hook that writes the paths it opened under INBOX
RUN = """
import os, sys
inbox, counts = sys.argv[1], sys.argv[2]
opened = []
def _note_open(event, args):
    if event == "open" and isinstance(args[0], (str, bytes)):
        opened.append(os.fsdecode(args[0]))
sys.addaudithook(_note_open)
from radsim.flows.cli import main
rc = main(["run", inbox, "--warehouse", sys.argv[3], "--demo-key", "--no-progress"])
root = os.path.realpath(inbox)
open(counts, "w").write("\\n".join(sorted({p for p in opened if os.path.realpath(p).startswith(root)})))
sys.exit(rc)
"""
EMPTY_FLOW = """
from prefect import flow
flow(name="bench-empty")(lambda: None)()
"""


def _inbox(cohort_inbox: Path, inbox: Path, n: int) -> int:
    folders = sorted(p for p in cohort_inbox.iterdir() if p.is_dir())
    for i in range(n):
        src = folders[i % len(folders)]
        shutil.copytree(src, inbox / f"N{i // len(folders):02d}{src.name}")
    return sum(1 for p in inbox.rglob("*") if p.is_file())


def _timed(code: str, *args: str, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, *args], env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,8000", help="inbox sizes in exams, comma-separated")
    parser.add_argument("--base", type=int, default=500, help="exams in the synthetic cohort that is copied")
    parser.add_argument("--repeat", type=int, default=3, help="timed no-op runs per size (the median counts)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    from radsim.synthetic import generate_cohort

    root = Path(tempfile.mkdtemp(prefix="radsim-bench-nightly-"))
    env = {**os.environ, "PREFECT_HOME": str(root / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1", "RADSIM_IMAGE_SIZE": "32", "RADSIM_MODEL_IMAGE_SIZE": "32",
           "RADSIM_MODEL_MAX_STEPS": "2", "RADSIM_MODEL_BATCH_SIZE": "32"}
    env.pop("PREFECT_API_URL", None)
    rows = []
    try:
        cohort = generate_cohort(root / "cohort", exams=args.base, seed=3, image_size=64, progress=False)
        _timed(EMPTY_FLOW, env=env)  # creates the Prefect database once, outside any measurement
        for n in sizes:
            inbox, wh, counts = root / f"inbox-{n}", root / f"wh-{n}", root / f"opened-{n}.txt"
            inbox.mkdir()
            n_files = _inbox(cohort.inbox, inbox, n)
            first = _timed(RUN, str(inbox), str(counts), str(wh), env=env)
            walls, startups = [], []
            for _ in range(args.repeat):
                startups.append(_timed(EMPTY_FLOW, env=env))
                walls.append(_timed(RUN, str(inbox), str(counts), str(wh), env=env))
            opened = [p for p in counts.read_text().splitlines() if p]
            wall, startup = sorted(walls)[len(walls) // 2], sorted(startups)[len(startups) // 2]
            rows.append(
                {
                    "exams": n,
                    "inbox_files": n_files,
                    "first_run_s": round(first, 2),
                    "noop_wall_s": round(wall, 3),
                    "prefect_startup_s": round(startup, 3),
                    "noop_less_startup_s": round(wall - startup, 3),
                    "inbox_files_opened": len(opened),
                    "opened_fraction": round(len(opened) / n_files, 4),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    small, large = rows[0], rows[-1]
    growth = large["noop_less_startup_s"] / max(small["noop_less_startup_s"], 1e-9)
    worst_opened = max(r["opened_fraction"] for r in rows)
    print(
        f"\nno-op nightly `radsim run`, {small['exams']} -> {large['exams']} exams "
        f"({large['exams'] / small['exams']:.0f}x):"
    )
    for r in rows:
        print(
            f"  {r['exams']:>6} exams, {r['inbox_files']:>6} files: wall {r['noop_wall_s']:.2f} s (Prefect start-up "
            f"{r['prefect_startup_s']:.2f} s), opened {r['inbox_files_opened']} inbox files "
            f"({r['opened_fraction']:.1%}); "
            f"first run {r['first_run_s']:.0f} s"
        )
    print(f"  growth of (wall - Prefect start-up): {growth:.2f}x (target <= {MAX_GROWTH}x); "
          f"worst share of files opened {worst_opened:.1%} (target <= {MAX_OPENED:.0%})")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "growth": growth}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
