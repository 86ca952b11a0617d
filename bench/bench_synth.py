"""Synthetic cohort generation rate (exams/s) at two sizes; linear scaling gives a ratio near 1.

    python -m bench.bench_synth [--sizes 1000 4000] [--image-size 512]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from radsim.synthetic import generate_cohort


def rate(n: int, image_size: int, seed: int = 0) -> tuple[float, float]:
    """(wall-clock exams/s, CPU-time exams/s); the CPU rate is steadier on a shared machine."""
    with tempfile.TemporaryDirectory(prefix="radsim-bench-synth-") as tmp:
        cpu0 = time.process_time()
        summary = generate_cohort(Path(tmp), exams=n, seed=seed, image_size=image_size, progress=False)
        return summary.exams_per_second, n / (time.process_time() - cpu0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs=2, default=[1000, 4000], metavar=("SMALL", "LARGE"))
    ap.add_argument("--image-size", type=int, default=512)
    args = ap.parse_args(argv)
    small, large = args.sizes
    (w_small, c_small), (w_large, c_large) = rate(small, args.image_size), rate(large, args.image_size)
    print(
        f"synth @ {args.image_size}px, wall: {small} exams {w_small:.1f} exams/s; {large} exams {w_large:.1f} exams/s; "
        f"ratio large/small {w_large / w_small:.2f} (1.0 = linear scaling)"
    )
    print(
        f"synth @ {args.image_size}px, CPU:  {small} exams {c_small:.1f} exams/s; {large} exams {c_large:.1f} exams/s; "
        f"ratio large/small {c_large / c_small:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
