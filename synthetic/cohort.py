"""Generate the synthetic cohort: inbox of DICOM + report folders, manifests and truth tables.

Layout under OUT (DESIGN §10):
  inbox/<exam_id>/report.txt, inbox/<exam_id>/<image_index>.dcm
  exams.parquet, truth.parquet (what the image shows), report_truth.parquet (what the text says)
  bad_exams.csv (only with bad=True), preview.png (only with preview=True)
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radsim.data_contracts import NO_FINDING, UsageError, load_contract, rows_to_table, write_parquet_atomic
from radsim.data_contracts.progress import progress_bar
from radsim.warehouse.layout import EXAMS_FILE, REPORT_TRUTH_FILE, TRUTH_FILE

from .bad import write_bad_csv, write_bad_records
from .config import SynthConfig, synth_config
from .dicom_writer import write_dicom
from .images import render_exam
from .plan import ExamSpec, plan_cohort
from .prevalence import FINDINGS
from .preview import PER_FINDING, choose_preview, thumbnail, write_contact_sheet
from .reports import no_finding_value

OUTPUT_FILES = (EXAMS_FILE, TRUTH_FILE, REPORT_TRUTH_FILE, "bad_exams.csv", "preview.png")


@dataclass(frozen=True)
class CohortSummary:
    out_dir: Path
    inbox: Path
    exams_path: Path
    truth_path: Path
    report_truth_path: Path
    bad_path: Path | None
    preview_path: Path | None
    n_exams: int
    n_images: int
    n_patients: int
    n_normal: int
    n_bad: int
    seconds: float
    prevalence: dict[str, int] = field(default_factory=dict)  # image-truth positives per finding

    @property
    def exams_per_second(self) -> float:
        return self.n_exams / self.seconds if self.seconds > 0 else float("inf")

    def lines(self) -> list[str]:
        out = [
            f"synthetic cohort: {self.n_exams} exams ({self.n_images} images, {self.n_patients} patients, "
            f"{self.n_normal} normal) in {self.seconds:.1f} s ({self.exams_per_second:.1f} exams/s)",
            f"  inbox:        {self.inbox}",
            f"  exams:        {self.exams_path}",
            f"  truth:        {self.truth_path}",
            f"  report truth: {self.report_truth_path}",
        ]
        if self.bad_path:
            out.append(f"  bad records:  {self.bad_path} ({self.n_bad} records, in the same inbox)")
        if self.preview_path:
            out.append(f"  preview:      {self.preview_path}")
        return out


def _prepare(out_dir: Path, overwrite: bool) -> Path:
    inbox = out_dir / "inbox"
    if inbox.exists() and any(inbox.iterdir()):
        if not overwrite:
            raise UsageError(f"{inbox} already holds exams; choose an empty folder or overwrite it")
        shutil.rmtree(inbox)
        for name in OUTPUT_FILES:
            (out_dir / name).unlink(missing_ok=True)
    try:
        inbox.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".radsim-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"cannot write to output folder {out_dir}: {exc.strerror or exc}") from None
    return inbox


def label_rows(specs: list[ExamSpec], which: str) -> list[dict[str, Any]]:
    """Rows in the labels contract: `which` is 'image' (truth) or 'report' (report_truth)."""
    rows = []
    for s in specs:
        if which == "image":
            values: dict[str, int | None] = {f: int(f in s.findings) for f in FINDINGS}
            values[NO_FINDING] = no_finding_value(values)
        else:
            values = dict(s.report.values)
        rows.append({
            "exam_id": s.exam_id, **values,
            "positive_findings": [f for f in (NO_FINDING, *FINDINGS) if values.get(f) == 1],
            "evidence": None, "labeler_version": None,
        })
    return rows


def exam_rows(specs: list[ExamSpec]) -> list[dict[str, Any]]:
    return [
        {"exam_id": s.exam_id, "patient_id": s.patient_id, "image_uri": f"inbox/{s.exam_id}/{k}.dcm", "image_index": k,
         "report_text": s.report.text, "study_date": s.study_date, "view_position": s.view_of(k), "source": "synthetic"}
        for s in specs for k in range(s.n_images)
    ]


def _preview_picks(specs: list[ExamSpec]) -> dict[int, list[str]]:
    """Exam index -> the rows of the preview sheet (normal, or a finding) its first image illustrates."""
    picks = choose_preview([set(s.findings) - {"support_devices"} for s in specs], ["normal", *FINDINGS])
    picks["support_devices"] = [s.index for s in specs if "support_devices" in s.findings][:PER_FINDING]
    shown: dict[int, list[str]] = {}
    for name, idx in picks.items():
        for i in idx:
            shown.setdefault(i, []).append(name)
    return shown


def generate_cohort(out_dir: str | Path, config: SynthConfig | None = None, *, progress: bool = True,
                    overwrite: bool = False, **settings: Any) -> CohortSummary:
    """Write a deterministic synthetic cohort under `out_dir` (same seed, same bytes).

    `config` (a SynthConfig) with any SynthConfig field given as a keyword (`exams=24, image_size=64`)
    says what to write; a value out of its bounds is a one-line UsageError before anything is written.
    """
    cfg = synth_config(config, **settings)
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    inbox = _prepare(out_dir, overwrite)
    specs = plan_cohort(cfg)
    shown = _preview_picks(specs) if cfg.preview else {}
    thumbs: dict[int, Any] = {}
    bar = progress_bar(cfg.exams, progress, unit="exam", desc="synth")
    try:
        for s in specs:
            folder = inbox / s.exam_id
            folder.mkdir(exist_ok=True)
            (folder / "report.txt").write_text(s.report.text, encoding="utf-8")
            for k in range(s.n_images):
                img = render_exam(s, k, cfg.image_size)
                write_dicom(folder / f"{k}.dcm", img, s, k)
                if k == 0 and s.index in shown:
                    thumbs[s.index] = thumbnail(img)
            bar.update(1)
    finally:
        bar.close()
    vocab_contract = load_contract("labels")
    exams_path = write_parquet_atomic(rows_to_table(load_contract("exams"), exam_rows(specs)),
                                      out_dir / EXAMS_FILE, contract=load_contract("exams"))
    truth_path = write_parquet_atomic(rows_to_table(vocab_contract, label_rows(specs, "image")),
                                      out_dir / TRUTH_FILE, contract=vocab_contract)
    rtruth_path = write_parquet_atomic(rows_to_table(vocab_contract, label_rows(specs, "report")),
                                       out_dir / REPORT_TRUTH_FILE, contract=vocab_contract)
    bad_path, n_bad = None, 0
    if cfg.bad:
        rows = write_bad_records(out_dir, specs, cfg.image_size)
        bad_path, n_bad = write_bad_csv(out_dir / "bad_exams.csv", rows), len(rows)
    preview_path = None
    if cfg.preview:
        sheet: dict[str, list] = {}
        for i, names in sorted(shown.items()):
            for name in names:
                sheet.setdefault(name, []).append((thumbs[i], specs[i].exam_id))
        ordered = {n: sheet[n] for n in ["normal", *FINDINGS] if n in sheet}
        preview_path = write_contact_sheet(out_dir / "preview.png", ordered)
    prevalence = {f: sum(f in s.findings for s in specs) for f in FINDINGS}
    return CohortSummary(
        out_dir=out_dir, inbox=inbox, exams_path=exams_path, truth_path=truth_path, report_truth_path=rtruth_path,
        bad_path=bad_path, preview_path=preview_path, n_exams=cfg.exams, n_images=sum(s.n_images for s in specs),
        n_patients=len({s.patient_id for s in specs}),
        n_normal=sum(1 for s in specs if not (set(s.findings) - {"support_devices"})),
        n_bad=n_bad, seconds=time.perf_counter() - t0, prevalence=prevalence,
    )
