"""The intended (pre-DICOM, display-oriented, bright = bone) image of any planned exam."""
from __future__ import annotations

import numpy as np

from .config import DEFAULT_IMAGE_SIZE
from .plan import ExamSpec
from .render import render_frontal, render_lateral


def exam_rng(spec: ExamSpec, image_index: int) -> np.random.Generator:
    """Pixels depend only on (seed, exam index, image index), never on other exams."""
    return np.random.default_rng(np.random.SeedSequence([spec.seed, 2, spec.index, image_index]))


def render_exam(spec: ExamSpec, image_index: int = 0, image_size: int = DEFAULT_IMAGE_SIZE) -> np.ndarray:
    """float32 [image_size, image_size] in [0, 1]; what the exam's DICOM decodes to."""
    rng = exam_rng(spec, image_index)
    if image_index == 0:
        return render_frontal(spec.findings, rng, image_size)
    return render_lateral(spec.findings, rng, image_size)
