"""Plan a cohort without pixels: ids, patients, dates, findings, attributes, reports, DICOM variants.

Planning is cheap and fully determined by (seed, n_exams, rates), so tests and the image
renderer can rebuild any exam's spec; pixels use a per-exam generator seeded from
(seed, exam index), so an exam's image does not depend on the others.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from radsim.data_contracts import SUPPORT_DEVICES

from . import people
from .config import SynthConfig, synth_config
from .prevalence import FINDINGS, sample_findings
from .reports import Report, compose_report

LATERAL_RATE = 0.05
SIDED = (
    "lung_opacity",
    "lung_lesion",
    "consolidation",
    "pneumonia",
    "atelectasis",
    "pneumothorax",
    "pleural_other",
    "fracture",
)


@dataclass(frozen=True)
class DicomVariant:
    photometric: str  # MONOCHROME1 or MONOCHROME2
    bits_stored: int  # 10, 12 or 16
    compression: str  # none, rle, j2k


@dataclass
class ExamSpec:
    index: int
    exam_id: str
    patient_id: str
    patient_name: str
    patient_sex: str
    birth_date: dt.date
    study_date: dt.date
    view: str  # PA or AP
    has_lateral: bool
    findings: dict[str, dict[str, Any]]  # what the image shows: name -> attributes
    report: Report
    variant: DicomVariant
    institution: str
    referrer: str
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_images(self) -> int:
        return 2 if self.has_lateral else 1

    def view_of(self, image_index: int) -> str:
        return self.view if image_index == 0 else "LATERAL"


def sample_attributes(rng: np.random.Generator, name: str, is_ap: bool, present: set[str]) -> dict[str, Any]:
    """Laterality, size and devices: shared by the renderer and the report."""
    side = ("left", "right")[int(rng.integers(2))]
    if name in ("cardiomegaly", "edema"):
        return {"severity": str(rng.choice(["mild", "moderate", "severe"], p=[0.4, 0.4, 0.2]))}
    if name == "pleural_effusion":
        return {"side": str(rng.choice(["left", "right", "bilateral"], p=[0.38, 0.37, 0.25])),
                "size": str(rng.choice(["small", "moderate", "large"], p=[0.45, 0.4, 0.15]))}
    if name == "pneumothorax":
        return {"side": side, "size": str(rng.choice(["small", "moderate", "large"], p=[0.5, 0.35, 0.15]))}
    if name == "lung_lesion":
        count = int(rng.choice([1, 2, 3], p=[0.7, 0.2, 0.1]))
        return {"side": side, "count": count, "kind": "mass" if count == 1 and rng.random() < 0.25 else "nodule"}
    if name == SUPPORT_DEVICES:
        p = ({"ett": 0.5, "ngt": 0.45, "central_line": 0.45, "pacemaker": 0.15, "chest_drain": 0.12} if is_ap
             else {"ett": 0.0, "ngt": 0.15, "central_line": 0.3, "pacemaker": 0.55, "chest_drain": 0.12})
        if present & {"pneumothorax", "pleural_effusion"}:
            p["chest_drain"] = 0.6
        devs = [d for d, q in p.items() if rng.random() < q]
        if not devs:
            devs = [max(p, key=p.get)]
        return {"devices": devs, "side": "right"}
    if name in SIDED:
        return {"side": side}
    return {}


def _variant(rng: np.random.Generator) -> DicomVariant:
    photometric = "MONOCHROME1" if rng.random() < 0.2 else "MONOCHROME2"
    bits = int(rng.choice([10, 12, 16], p=[0.2, 0.45, 0.35]))
    compression = str(rng.choice(["none", "rle", "j2k"], p=[0.75, 0.2, 0.05]))
    return DicomVariant(photometric, bits, compression)


def _ids(rng: np.random.Generator, n: int, start: int, width: int, prefix: str) -> list[str]:
    nums = start + np.cumsum(rng.integers(1, 40, size=n))
    return [f"{prefix}{int(v):0{width}d}" for v in nums]


def plan_cohort(config: SynthConfig | None = None, **settings: Any) -> list[ExamSpec]:
    """Every exam's spec, deterministic for (exams, seed, rates); `config` and keywords as for generate_cohort."""
    cfg = synth_config(config, **settings)
    n_exams, seed, omission_rate, overcall_rate = cfg.exams, cfg.seed, cfg.omission_rate, cfg.overcall_rate
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    # reports draw from their own stream, so noise rates change the text but never the images
    text_rng = np.random.default_rng(np.random.SeedSequence([seed, 3]))
    present, is_ap, _ = sample_findings(rng, n_exams)
    exam_ids = _ids(rng, n_exams, 20_000_000, 8, "ACC")
    # patients: about a quarter of exams are repeat visits of an earlier patient
    patient_of: list[int] = []
    n_pat = 0
    for i in range(n_exams):
        if i > 3 and rng.random() < 0.25:
            patient_of.append(patient_of[int(rng.integers(i))])
        else:
            patient_of.append(n_pat)
            n_pat += 1
    pat_ids = _ids(rng, n_pat, 4_000_000, 7, "MRN")
    pat_sex = ["F" if rng.random() < 0.5 else "M" for _ in range(n_pat)]
    pat_name = [
        f"{people.SURNAMES[int(rng.integers(len(people.SURNAMES)))]}^"
        f"{(people.GIVEN_F if s == 'F' else people.GIVEN_M)[int(rng.integers(12))]}"
        for s in pat_sex
    ]
    pat_birth = [dt.date(1930, 1, 1) + dt.timedelta(days=int(rng.integers(0, 365 * 75))) for _ in range(n_pat)]
    day0 = dt.date(2019, 1, 1)
    specs: list[ExamSpec] = []
    for i in range(n_exams):
        names = [f for f, p in zip(FINDINGS, present[i]) if p]
        view = "AP" if is_ap[i] else "PA"
        findings = {f: sample_attributes(rng, f, bool(is_ap[i]), set(names)) for f in names}
        report = compose_report(
            text_rng, findings, FINDINGS, view=view, omission_rate=omission_rate, overcall_rate=overcall_rate,
            overcall_attrs=lambda f, ap=bool(is_ap[i]), names=names: sample_attributes(text_rng, f, ap, set(names)),
        )
        p = patient_of[i]
        specs.append(ExamSpec(
            index=i, exam_id=exam_ids[i], patient_id=pat_ids[p], patient_name=pat_name[p], patient_sex=pat_sex[p],
            birth_date=pat_birth[p], study_date=day0 + dt.timedelta(days=int(rng.integers(0, 6 * 365))),
            view=view, has_lateral=bool(rng.random() < LATERAL_RATE), findings=findings, report=report,
            variant=_variant(rng), institution=people.INSTITUTIONS[int(rng.integers(len(people.INSTITUTIONS)))],
            referrer=people.REFERRERS[int(rng.integers(len(people.REFERRERS)))], seed=seed,
        ))
    return specs
