"""The real JPEG 2000 chest films: `radsim shard` against a bare full-decode loop (issue 24).

N exams alternate the two real JPEG 2000 chest DICOMs in ../shared/data/dicom (966_fixed: 2128 ×
2000 lossless 12-bit; RG1_J2KI: 1955 × 1841 lossy 15-bit). In the same run:
- bare loop: pydicom full decode (`pixel_array`), min-max to 8 bits, resize the long side to
  SIZE, PNG encode, in this process: no radsim code at all;
- radsim: `radsim shard --image-size SIZE --workers 1 --demo-key` as a new process, so Python
  start-up, imports, planning, manifests and tar writing are all inside its time.
Each side is timed `repeat` times and the best is kept (the machine is shared). Then every PNG
radsim stored is compared with the square image today's full decode gives for its source file:
Spearman's rank correlation, target >= 0.98 for every image. Speed target: >= 4x the bare loop.

    python -m bench.bench_films --n 60
"""
from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

from radsim.warehouse.layout import EXAMS_FILE, QUARANTINE_FILE

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dicom"
J2K_FILMS = ("966_fixed.dcm", "RG1_J2KI.dcm")
MIN_SPEEDUP = 4.0
MIN_RHO = 0.98


def bare_full_decode(paths: list[Path], size: int) -> float:
    """Seconds for pydicom full decode + 8-bit + resize + PNG encode of every path (the baseline)."""
    from PIL import Image
    from pydicom import dcmread

    t = time.perf_counter()
    for path in paths:
        arr = dcmread(path).pixel_array.astype(np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        img = Image.fromarray(np.round((arr - lo) * (255.0 / max(hi - lo, 1.0))).astype(np.uint8), mode="L")
        scale = size / max(img.size)
        img = img.resize(
            (max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.BILINEAR
        )
        img.save(io.BytesIO(), format="PNG", compress_level=1)
    return time.perf_counter() - t


def radsim_shard(exams: Path, out: Path, size: int) -> float:
    """Wall seconds of `radsim shard ... --workers 1` in a new process, start-up included."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-c", "import sys; from radsim.flows.cli import main; sys.exit(main(sys.argv[1:]))",
           "shard", "--exams", str(exams), "--out", str(out), "--image-size", str(size), "--workers", "1",
           "--demo-key", "--no-progress", "--quarantine", str(out.parent / QUARANTINE_FILE)]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def stored_correlations(shards: Path, exam_files: dict[str, Path], size: int) -> list[tuple[str, float]]:
    """(source file name, rank correlation) of every PNG in the shards against today's full decode."""
    from pydicom import dcmread

    from radsim.data_contracts import demo_keyer
    from radsim.imaging.decode import decode_dataset
    from radsim.imaging.fidelity import rank_correlation
    from radsim.imaging.normalise import decode_png, square_image

    keyer = demo_keyer()
    source = {keyer.exam_key(exam_id): path for exam_id, path in exam_files.items()}
    reference = {p: square_image(decode_dataset(dcmread(p), None).pixels, size) for p in set(exam_files.values())}
    rows = []
    for tar in sorted(shards.glob("shard-*.tar")):
        with tarfile.open(tar) as archive:
            for member in archive.getmembers():
                if member.name.endswith(".png"):
                    path = source[member.name[: -len(".png")].rsplit("_", 1)[0]]
                    stored = decode_png(archive.extractfile(member).read())  # type: ignore[union-attr]
                    rows.append((path.name, rank_correlation(stored, reference[path])))
    return rows


def per_file_rates(shared: Path, size: int, reps: int = 3) -> list[dict]:
    """Every real DICOM: seconds per image of the shard worker's decode + PNG, reduced and in full (same run).

    Uses `decode_dataset` (no chest policy), so the hip films' syntaxes are timed too.
    """
    from pydicom import dcmread

    from radsim.imaging.decode import decode_dataset
    from radsim.imaging.normalise import normalise_to_png

    def seconds(path: Path, output_size: int | None) -> float:
        best = float("inf")
        for _ in range(reps):
            t = time.perf_counter()
            img = decode_dataset(dcmread(path), output_size)
            normalise_to_png(img.pixels, size, img.geometry)
            best = min(best, time.perf_counter() - t)
        return best

    rows = []
    for path in sorted(shared.glob("*.dcm")):
        syntax = dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
        reduced, full = seconds(path, size), seconds(path, None)
        rows.append(
            {"file": path.name, "syntax": syntax.name, "reduced_s": round(reduced, 4), "full_s": round(full, 4)}
        )
        print(
            f"            {path.name:<19} {syntax.name[:44]:<44} reduced {reduced * 1000:6.1f} ms "
            f"({1 / reduced:5.1f} img/s) | full {full * 1000:6.1f} ms ({1 / full:5.1f} img/s) | {full / reduced:4.1f}x",
            flush=True,
        )
    return rows


def films_row(shared: Path, n: int, size: int, repeat: int = 2) -> dict:
    """Time both sides on N exams of the two films, check every stored image, print and return the row."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    films = [shared / f for f in J2K_FILMS]
    missing = [f.name for f in films if not f.exists()]
    if missing:
        raise SystemExit(f"bench_films: {missing} not found in {shared}")
    work = Path(tempfile.mkdtemp(prefix="bench-films-"))
    try:
        exam_files = {f"F{i:05d}": films[i % 2] for i in range(n)}
        pq.write_table(pa.table({"exam_id": list(exam_files), "patient_id": [f"P{i:05d}" for i in range(n)],
                                 "image_uri": [str(p) for p in exam_files.values()]}), work / EXAMS_FILE)
        paths = list(exam_files.values())
        bare = min(bare_full_decode(paths, size) for _ in range(repeat))
        ours = min(radsim_shard(work / EXAMS_FILE, work / "shards", size) for _ in range(repeat))
        rhos = stored_correlations(work / "shards", exam_files, size)
        pq.write_table(pq.read_table(work / EXAMS_FILE).slice(0, 2), work / "two.parquet")
        start = min(radsim_shard(work / "two.parquet", work / "shards", size) for _ in range(repeat))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    row = _report(n, size, bare, ours, rhos)
    steady = (n - 2) / max(ours - start, 1e-9)
    print(f"            start-up (a 2-exam run) {start:.2f} s; steady state {steady:5.1f} img/s per process "
          f"(the rate for a long backfill)", flush=True)
    return {**row, "two_exam_run_s": round(start, 3), "steady_img_s": round(steady, 1),
            "per_file": per_file_rates(shared, size)}


def _report(n: int, size: int, bare: float, ours: float, rhos: list[tuple[str, float]]) -> dict:
    speedup = bare / ours
    worst = min(r for _, r in rhos) if rhos else float("nan")
    per_file = {name: sorted({round(r, 5) for f, r in rhos if f == name}) for name in sorted({f for f, _ in rhos})}
    print(
        f"     films: n={n} JPEG 2000 chest exams -> {size} px | bare full-decode loop {bare:6.2f} s "
        f"({n / bare:5.1f} img/s) | radsim shard --workers 1 {ours:6.2f} s with start-up ({n / ours:5.1f} img/s) "
        f"| {speedup:.2f}x (target >= {MIN_SPEEDUP:.0f}x: {'PASS' if speedup >= MIN_SPEEDUP else 'MISSED'})",
        flush=True,
    )
    print(f"            {len(rhos)} stored images; rank correlation with the full decode: "
          + ", ".join(f"{name} {values}" for name, values in per_file.items())
          + f"; worst {worst:.5f} (target >= {MIN_RHO}: {'PASS' if len(rhos) == n and worst >= MIN_RHO else 'MISSED'})",
          flush=True)
    return {"images": n, "size": size, "bare_s": round(bare, 3), "radsim_s": round(ours, 3),
            "speedup": round(speedup, 3), "stored_images": len(rhos), "worst_rank_correlation": round(worst, 5),
            "rank_correlation_by_file": per_file}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=60, help="exams (default: %(default)s)")
    ap.add_argument("--size", type=int, default=256, help="stored image size (default: %(default)s)")
    ap.add_argument("--repeat", type=int, default=2, help="timings per side, best kept (default: %(default)s)")
    args = ap.parse_args(argv)
    films_row(SHARED, args.n, args.size, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
