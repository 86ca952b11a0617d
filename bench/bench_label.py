"""Report labelling throughput, as ratios against baselines measured in the same run (issue 3).

    python -m bench.bench_label [--n 3000] [--workers 2]        # throughput + worker speed-up
    python -m bench.bench_label --scale 745000                  # radsim label --workers 2 on N reports

Targets: labelled reports/s ≥ 0.30 × `nlp.make_doc` (tokenising only) on the same texts and
≥ 1,000 reports/s on one core; 2 workers ≥ 1.7 × one worker; at scale, peak RSS of the whole
process tree ≤ 1.5 GB.
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from radsim.warehouse.layout import LABELS_FILE

# --------------------------------------------------------------------------- realistic reports

_SIDES = ["left", "right"]
_ZONES = ["upper", "mid", "lower"]
_POSITIVE = [
    "Small {s} pleural effusion.",
    "Moderate {s} pleural effusion with associated basal atelectasis.",
    "Patchy consolidation in the {s} {z} zone in keeping with infection.",
    "Mild cardiomegaly.",
    "Small {s} apical pneumothorax, measuring 1.5 cm.",
    "Linear atelectasis at the {s} base.",
    "Upper lobe diversion and septal lines in keeping with pulmonary oedema.",
    "Hyperinflated lungs in keeping with emphysema.",
    "A 12 mm nodule projects over the {s} {z} zone.",
    "Old healed {s} rib fractures.",
    "Large hiatus hernia.",
    "Bibasal reticulation consistent with pulmonary fibrosis.",
    "{S} apical pleural thickening.",
    "The mediastinum is widened.",
    "Increased opacity in the {s} {z} zone.",
    "Stable {s} effusion.",
]
_HEDGED = [
    "Possible early consolidation at the {s} base.", "Infection cannot be excluded.",
    "{S} basal opacity, likely atelectasis.", "? small {s} pneumothorax.", "Appearances may represent early oedema.",
    "Atelectasis versus consolidation at the {s} base.",
]
_NEGATIVE = [
    "No pneumothorax.",
    "No pleural effusion.",
    "No focal consolidation, pleural effusion or pneumothorax.",
    "Heart size is normal.",
    "The cardiomediastinal silhouette is within normal limits.",
    "No acute bony abnormality.",
    "There is no pulmonary oedema.",
    "The lungs are clear.",
    "No evidence of pneumonia.",
    "Costophrenic angles are clear.",
    "The previously seen {s} effusion has resolved.",
    "The {s} pneumothorax is no longer visible.",
]
_DEVICES = [
    "ETT tip 4 cm above the carina.",
    "NGT tip below the diaphragm.",
    "Lines and tubes in satisfactory position.",
    "{S} internal jugular central venous catheter with tip in the SVC.",
    "Dual chamber pacemaker in situ.",
]
_INDICATION = ["Shortness of breath.", "? pneumonia.", "Follow up of known effusion.", "Post line insertion.",
               "Cough and fever for three days.", "Chest pain, ? pneumothorax."]


def make_report(rng: random.Random, lo: int = 400, hi: int = 800) -> str:
    """A report of lo–hi characters: header layout or none, a mix of positive, hedged and negated sentences."""
    while True:
        def fill(t: str) -> str:
            s = rng.choice(_SIDES)
            return t.format(s=s, S=s.capitalize(), z=rng.choice(_ZONES))

        findings = [fill(rng.choice(_POSITIVE)) for _ in range(rng.randint(0, 3))]
        findings += [fill(rng.choice(_HEDGED)) for _ in range(rng.randint(0, 1))]
        findings += [fill(rng.choice(_DEVICES)) for _ in range(rng.randint(0, 2))]
        findings += [fill(t) for t in rng.sample(_NEGATIVE, rng.randint(3, 7))]
        rng.shuffle(findings)
        impression = " ".join(findings[: rng.randint(1, 2)])
        if rng.random() < 0.7:
            text = (f"INDICATION: {rng.choice(_INDICATION)}\nTECHNIQUE: PA chest radiograph.\n"
                    f"COMPARISON: Previous radiograph.\nFINDINGS: {' '.join(findings)}\nIMPRESSION: {impression}")
        else:
            text = " ".join(findings)
        if lo <= len(text) <= hi:
            return text


def make_reports(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [make_report(rng) for _ in range(n)]


# --------------------------------------------------------------------------- throughput

def _steady_rate(texts: list[str], workers: int, batch_size: int) -> float:
    """Reports/s after the first batch arrives (excludes process start-up and pipeline build)."""
    from radsim.nlp.runner import label_reports

    records = ((f"e{i}", t) for i, t in enumerate(texts))
    t_first = None
    n_first = 0
    for batch in label_reports(records, workers=workers, batch_size=batch_size):
        if t_first is None:
            t_first, n_first = time.perf_counter(), batch.table.num_rows
    return (len(texts) - n_first) / (time.perf_counter() - t_first)


def throughput(n: int, workers: int, batch_size: int) -> None:
    from radsim.nlp.labeler import build_labeler
    from radsim.nlp.text import prepare

    texts = make_reports(n)
    mean_len = sum(map(len, texts)) / len(texts)
    labeler = build_labeler()
    nlp = labeler.nlp
    list(labeler.label_many(texts[:200]))  # warm-up
    t0 = time.perf_counter()
    for t in texts:
        nlp.make_doc(t)
    base = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in labeler.label_many(texts, batch_size=256):
        pass
    full = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for t in texts:
        prepare(t)
    prep = n / (time.perf_counter() - t0)
    print(f"{n} reports, mean {mean_len:.0f} chars, one process:")
    print(f"  nlp.make_doc (tokenise only)      {base:8.0f} reports/s")
    print(f"  text.prepare (markup, sections)   {prep:8.0f} reports/s")
    print(f"  Labeler.label_many (everything)   {full:8.0f} reports/s   ratio vs make_doc {full / base:.2f} "
          f"(target ≥ 0.30, ≥ 1,000/s)")
    if workers > 1:
        texts_w = make_reports(n * workers, seed=1)
        r1 = _steady_rate(texts_w, 1, batch_size)
        rw = _steady_rate(texts_w, workers, batch_size)
        print(f"  label_reports workers=1 {r1:8.0f} reports/s, workers={workers} {rw:8.0f} reports/s: "
              f"speed-up {rw / r1:.2f}x (target ≥ 1.7x with 2; steady state, after start-up)")


# --------------------------------------------------------------------------- scale

def _tree_rss(root: int) -> int:
    """Resident bytes of a process and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
            fields = stat[stat.rindex(")") + 2:].split()
            pid, ppid = int(entry), int(fields[1])
            rss[pid] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
            children.setdefault(ppid, []).append(pid)
        except (OSError, ValueError, IndexError):
            continue
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def scale(n: int, workers: int, keep: Path | None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = Path(tempfile.mkdtemp(prefix="radsim-bench-label-")) if keep is None else keep
    tmp.mkdir(parents=True, exist_ok=True)
    src = tmp / "reports.parquet"
    rng = random.Random(7)
    t0 = time.perf_counter()
    with pq.ParquetWriter(src, pa.schema([("exam_id", pa.string()), ("report_text", pa.string())])) as w:
        for start in range(0, n, 50_000):
            k = min(50_000, n - start)
            w.write_table(pa.table({"exam_id": [f"EX{start + i:09d}" for i in range(k)],
                                    "report_text": [make_report(rng) for _ in range(k)]}))
    print(f"wrote {n} reports to {src} in {time.perf_counter() - t0:.0f} s")
    cmd = [sys.executable, "-m", "radsim.flows.cli", "label", str(src), "--out", str(tmp / LABELS_FILE),
           "--workers", str(workers), "--no-progress"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss(proc.pid))
        time.sleep(0.5)
    wall = time.perf_counter() - t0
    output = proc.stdout.read() if proc.stdout else ""
    print(output.strip().splitlines()[-2] if output.strip() else "(no output)")
    print(f"radsim label --workers {workers} on {n} reports: exit {proc.returncode}, wall {wall:.0f} s "
          f"({n / wall:.0f} reports/s), peak RSS of the process tree {peak / 2**30:.2f} GiB (target ≤ 1.5 GB)")
    if proc.returncode != 0:
        print(output[-2000:])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000, help="reports for the throughput run (default: %(default)s)")
    ap.add_argument("--workers", type=int, default=2, help="workers compared with one (default: %(default)s)")
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--scale", type=int, metavar="N", help="instead: run `radsim label` on N generated reports")
    ap.add_argument("--keep", type=Path, help="folder for the --scale files (default: a temporary folder)")
    args = ap.parse_args(argv)
    if args.scale:
        scale(args.scale, args.workers, args.keep)
    else:
        throughput(args.n, args.workers, args.batch_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
