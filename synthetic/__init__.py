"""The embedded default cohort (DESIGN §10): synthetic chest radiographs, reports and truth."""
from .cohort import CohortSummary, exam_rows, generate_cohort, label_rows
from .images import render_exam
from .plan import DicomVariant, ExamSpec, plan_cohort
from .prevalence import FINDINGS, SCENARIOS, expected_prevalence, sample_findings
from .reports import IMPLICIT_PHRASES, compose_report, no_finding_value

__all__ = [
    "CohortSummary", "generate_cohort", "exam_rows", "label_rows", "render_exam", "DicomVariant", "ExamSpec",
    "plan_cohort", "FINDINGS", "SCENARIOS", "expected_prevalence", "sample_findings", "IMPLICIT_PHRASES",
    "compose_report", "no_finding_value",
]
