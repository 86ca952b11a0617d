"""`make bench`: every benchmark at its default size, one after the other (they share the cores).

Each prints its rates as ratios against a baseline measured in the same run; nothing here is a
pass/fail test. Larger runs (745k reports, 10k exams) are options of the individual scripts.
"""
from __future__ import annotations

import subprocess
import sys

BENCHES = ("bench.bench_synth", "bench.bench_label", "bench.bench_shard", "bench.bench_train", "bench.bench_publish",
           "bench.bench_storage")


def main() -> int:
    failed = []
    for module in BENCHES:
        print(f"\n=== {module}", flush=True)
        if subprocess.run([sys.executable, "-m", module]).returncode != 0:
            failed.append(module)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
