"""DICOM → shard throughput against the pure decode+resize+encode rate of the same files.

Prints, for synthetic 512 px DICOMs and for the shared real chest files:
- base: images/s of the worker's own decode + normalise_to_png in a plain loop (no shard machinery)
- w1, w2: images/s of write_shards with 1 and 2 worker processes
- overhead ratio w1/base (target >= 0.8) and speed-up w2/w1 (target >= 1.7)
then the JPEG 2000 films against a bare full-decode loop (issue 24, bench/bench_films.py):
`radsim shard --image-size 256 --workers 1` as a new process, start-up included, against pydicom
full decode + resize + PNG encode of the same exams in the same run (target >= 4x), with every
stored image's rank correlation against today's full decode (target >= 0.98);
and the peak RSS of a whole write_shards run at two cohort sizes (should not grow).

    python -m bench.bench_shard --n 300 --rss 1000,10000
    python -m bench.bench_shard --n 0 --rss '' --films 60     # only the JPEG 2000 films row
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dicom"
REAL_CHEST = ("RG1_J2KI.dcm", "RG1_JLSN.dcm", "966_fixed.dcm")


def synthetic_dicoms(folder: Path, n_files: int, side: int = 512, seed: int = 0) -> list[Path]:
    """Chest-like DX DICOMs: mixed MONOCHROME1/2, 12/16 bit, some RLE-compressed."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, RLELossless, generate_uid

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side] / side
    paths = []
    for i in range(n_files):
        d = 0.5 + 0.1 * np.sin(xx * (6 + i % 5)) * np.cos(yy * 4)
        for cx in (0.3, 0.7):
            d[((xx - cx) / 0.16) ** 2 + ((yy - 0.5) / 0.3) ** 2 < 1] = 0.15
        d[:, int(0.45 * side):int(0.55 * side)] = 0.9
        d = np.clip(d + rng.normal(0, 0.03, d.shape), 0, 1)
        bits = 12 if i % 2 else 16
        mono1 = i % 3 == 0
        stored = np.round((1 - d if mono1 else d) * (2**bits - 1)).astype(np.uint16)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.1.1")
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.PatientName, ds.PatientID, ds.Modality, ds.BodyPartExamined, ds.ViewPosition = (
            f"Bench^{i}",
            f"B{i}",
            "DX",
            "CHEST",
            "PA",
        )
        ds.Rows = ds.Columns = side
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME1" if mono1 else "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits, bits - 1, 0
        if mono1:
            ds.PresentationLUTShape = "INVERSE"
        ds.PixelData = stored.tobytes()
        if i % 4 == 1:
            ds.compress(RLELossless)
        path = folder / f"syn_{i:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def exams_for(files: list[Path], n: int, prefix: str = "E") -> pa.Table:
    uris = [str(files[i % len(files)]) for i in range(n)]
    return pa.table({"exam_id": [f"{prefix}{i:07d}" for i in range(n)],
                     "patient_id": [f"P{i // 2:07d}" for i in range(n)], "image_uri": uris})


def base_rate(uris: list[str], size: int) -> float:
    """The worker's decode (reduced resolution where the syntax allows) + PNG, without shard machinery."""
    from radsim.imaging.decode import read_image
    from radsim.imaging.normalise import normalise_to_png

    t = time.perf_counter()
    for u in uris:
        img = read_image(u, output_size=size)
        normalise_to_png(img.pixels, size, img.geometry)
    return len(uris) / (time.perf_counter() - t)


def parallel_ceiling(uris: list[str], size: int) -> float:
    """Images/s of two independent base loops at once: what 2 workers could reach on this machine now."""
    import multiprocessing as mp

    halves = [uris[0::2], uris[1::2]]
    with mp.get_context("forkserver").Pool(2) as pool:
        pool.starmap(base_rate, [(h[:2], size) for h in halves])  # start-up outside the timing
        t = time.perf_counter()
        pool.starmap(base_rate, [(h, size) for h in halves])
        return len(uris) / (time.perf_counter() - t)


def shard_rate(exams: pa.Table, workers: int, size: int) -> float:
    from radsim.data_contracts import demo_keyer
    from radsim.imaging.shards import write_shards

    out = Path(tempfile.mkdtemp(prefix="bench-shard-"))
    try:
        t = time.perf_counter()
        s = write_shards(exams, None, out, keyer=demo_keyer(), image_size=size, workers=workers, progress=False)
        dt = time.perf_counter() - t
        assert s.counts.rows_out == exams.num_rows, s.summary()
        return exams.num_rows / dt
    finally:
        shutil.rmtree(out, ignore_errors=True)


def compare(label: str, files: list[Path], n: int, size: int) -> dict:
    exams = exams_for(files, n)
    uris = exams.column("image_uri").to_pylist()
    base_rate(uris[: min(10, n)], size)  # warm caches and imports
    base = base_rate(uris, size)
    w1 = shard_rate(exams, 1, size)
    w2 = shard_rate(exams, 2, size)
    ceiling = parallel_ceiling(uris, size)
    row = {"set": label, "images": n, "base_img_s": round(base, 1), "w1_img_s": round(w1, 1), "w2_img_s": round(w2, 1),
           "overhead_ratio": round(w1 / base, 3), "speedup_2v1": round(w2 / w1, 3),
           "machine_2proc_ceiling": round(ceiling / base, 3)}
    print(
        f"{label:>10}: n={n} base {base:7.1f} img/s | 1 worker {w1:7.1f} img/s (ratio {w1 / base:.2f}, target >= 0.8) "
        f"| 2 workers {w2:7.1f} img/s (speed-up {w2 / w1:.2f}x, target >= 1.7x; two bare decode loops "
        f"reach {ceiling / base:.2f}x here now)",
        flush=True,
    )
    return row


def _rss_child(folder: str, n: int, size: int) -> None:
    """Run in a fresh process: shard n exams, print peak RSS (MiB)."""
    files = sorted(Path(folder).glob("rss_*.dcm"))
    from radsim.data_contracts import demo_keyer
    from radsim.imaging.shards import write_shards

    out = Path(tempfile.mkdtemp(prefix="bench-rss-"))
    try:
        t = time.perf_counter()
        write_shards(exams_for(files, n), None, out, keyer=demo_keyer(), image_size=size, workers=1, progress=False)
        dt = time.perf_counter() - t
    finally:
        shutil.rmtree(out, ignore_errors=True)
    print(json.dumps({"n": n, "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "img_s": round(n / dt, 1)}))


def rss_curve(sizes: list[int], size: int) -> list[dict]:
    folder = Path(tempfile.mkdtemp(prefix="bench-rss-src-"))
    try:
        for p in synthetic_dicoms(folder, 8, side=128, seed=1):
            p.rename(folder / p.name.replace("syn_", "rss_"))
        rows = []
        for n in sizes:
            out = subprocess.run(
                [sys.executable, "-m", "bench.bench_shard", "--rss-child", str(folder), str(n), str(size)],
                check=True,
                capture_output=True,
                text=True,
                cwd=Path(__file__).resolve().parents[1],
            )
            row = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"   peak RSS: {row['n']:>6} exams (128 px DICOM → {size} px) {row['peak_rss_mib']:7.1f} MiB "
                  f"({row['img_s']} img/s)", flush=True)
            rows.append(row)
        if len(rows) >= 2:
            print(
                f"   RSS growth {rows[-1]['n']}/{rows[0]['n']} exams: "
                f"{rows[-1]['peak_rss_mib'] / rows[0]['peak_rss_mib']:.2f}x "
                "(target: ~1.0x)",
                flush=True,
            )
        return rows
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300, help="images per throughput measurement (default: %(default)s)")
    ap.add_argument("--size", type=int, default=256, help="stored image size (default: %(default)s)")
    ap.add_argument("--rss", default="1000,10000", help="cohort sizes for the peak-RSS runs ('' to skip)")
    ap.add_argument("--films", type=int, default=60, help="exams of the two real JPEG 2000 chest films for the "
                    "radsim-vs-bare-loop row (0 to skip; default: %(default)s)")
    ap.add_argument("--repeat", type=int, default=2, help="timings per side of that row, the best kept "
                    "(default: %(default)s)")
    ap.add_argument("--rss-child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.rss_child:
        _rss_child(args.rss_child[0], int(args.rss_child[1]), int(args.rss_child[2]))
        return 0
    print(f"bench_shard: {os.cpu_count()} CPU(s), load {os.getloadavg()[0]:.2f}", flush=True)
    results: dict = {"throughput": []}
    folder = Path(tempfile.mkdtemp(prefix="bench-syn-"))
    try:
        syn = synthetic_dicoms(folder, 24) if args.n else []
        if args.n:
            results["throughput"].append(compare("synthetic", syn, args.n, args.size))
        real = [SHARED / f for f in REAL_CHEST if (SHARED / f).exists()]
        if real and args.n:
            results["throughput"].append(compare("real", real, max(12, args.n // 5), args.size))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if args.films:
        from .bench_films import films_row

        results["films"] = films_row(SHARED, args.films, args.size, args.repeat)
    sizes = [int(s) for s in args.rss.split(",") if s.strip()]
    if sizes:
        results["rss"] = rss_curve(sizes, args.size)
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "bench_shard.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
