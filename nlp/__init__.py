"""Report text → CheXpert-style labels with evidence (DESIGN §6). README "Label extraction" documents it.

    from radsim.nlp import build_labeler, label_texts, label_dataframe, label_file
    labeler = build_labeler()                      # default vocabulary, or a YAML path / Vocabulary
    labeler.label("No pneumothorax. Small left effusion.").values
    label_texts(["No effusion.", "Possible pneumonia."], labeler=labeler)
    label_dataframe(df, text_column="report_text", naming="chexpert", labeler=labeler)
    label_file("reports.csv", "labels.parquet", workers=2)

spaCy is imported by the submodules, so `import radsim.nlp` alone stays cheap.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["build_labeler", "Labeler", "ReportLabels", "Evidence", "BadReport", "LABELER_VERSION",
           "label_reports", "label_file", "LabelBatch", "LabelRunSummary", "open_reports", "ReportRecord",
           "score_labels", "F1Report", "explain", "find_report", "quarantine_path_for", "label_texts",
           "label_dataframe", "InputFormat", "LabelConfig"]

_WHERE = {
    "build_labeler": "labeler", "Labeler": "labeler", "ReportLabels": "labeler", "Evidence": "labeler",
    "BadReport": "labeler", "LABELER_VERSION": "version",
    "label_reports": "runner", "label_file": "runner", "LabelBatch": "runner", "LabelRunSummary": "runner",
    "explain": "runner", "find_report": "runner", "quarantine_path_for": "runner",
    "open_reports": "reading", "ReportRecord": "reading",
    "score_labels": "scoring", "F1Report": "scoring", "label_texts": "api", "label_dataframe": "api",
    "InputFormat": "input_files", "LabelConfig": "config",
}

if TYPE_CHECKING:  # pragma: no cover
    from .api import label_dataframe, label_texts  # noqa: F401
    from .config import LabelConfig  # noqa: F401
    from .input_files import InputFormat  # noqa: F401
    from .labeler import BadReport, Evidence, Labeler, ReportLabels, build_labeler  # noqa: F401
    from .reading import ReportRecord, open_reports  # noqa: F401
    from .runner import (  # noqa: F401
        LabelBatch,
        LabelRunSummary,
        explain,
        find_report,
        label_file,
        label_reports,
        quarantine_path_for,
    )
    from .scoring import F1Report, score_labels  # noqa: F401
    from .version import LABELER_VERSION  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
