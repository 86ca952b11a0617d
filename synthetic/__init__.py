"""The embedded default cohort (DESIGN §10): synthetic chest radiographs, reports and truth.

numpy and pydicom are imported by the submodules, so `import radsim.synthetic.config` (what
`radsim synth --help` needs) stays cheap.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "CohortSummary", "SynthConfig", "generate_cohort", "exam_rows", "label_rows", "render_exam", "DicomVariant",
    "ExamSpec", "plan_cohort", "FINDINGS", "SCENARIOS", "expected_prevalence", "sample_findings", "IMPLICIT_PHRASES",
    "compose_report", "no_finding_value",
]

_WHERE = {
    "CohortSummary": "cohort", "generate_cohort": "cohort", "exam_rows": "cohort", "label_rows": "cohort",
    "SynthConfig": "config", "render_exam": "images", "DicomVariant": "plan", "ExamSpec": "plan",
    "plan_cohort": "plan", "FINDINGS": "prevalence", "SCENARIOS": "prevalence", "expected_prevalence": "prevalence",
    "sample_findings": "prevalence", "IMPLICIT_PHRASES": "reports", "compose_report": "reports",
    "no_finding_value": "reports",
}

if TYPE_CHECKING:  # pragma: no cover
    from .cohort import CohortSummary, exam_rows, generate_cohort, label_rows  # noqa: F401
    from .config import SynthConfig  # noqa: F401
    from .images import render_exam  # noqa: F401
    from .plan import DicomVariant, ExamSpec, plan_cohort  # noqa: F401
    from .prevalence import FINDINGS, SCENARIOS, expected_prevalence, sample_findings  # noqa: F401
    from .reports import IMPLICIT_PHRASES, compose_report, no_finding_value  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
