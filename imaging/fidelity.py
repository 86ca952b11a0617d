"""How close a reduced-resolution decode is to today's full decode, measured on the stored image.

Used by the fidelity test (tests/imaging/test_fidelity.py, on every real DICOM) and by
bench/bench_shard.py, so both report the same number: Spearman's rank correlation between the
two square 8-bit images the shard stage would store.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties sharing their mean rank (8-bit images are mostly ties)."""
    _, inverse, counts = np.unique(values.ravel(), return_inverse=True, return_counts=True)
    mean_rank = np.cumsum(counts) - (counts - 1) / 2.0
    return mean_rank[inverse]


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho of two equally shaped arrays (1.0 when both are constant and equal)."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    ra, rb = average_ranks(a), average_ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = float(np.sqrt((ra * ra).sum() * (rb * rb).sum()))
    if denominator == 0.0:
        return 1.0 if np.array_equal(a, b) else 0.0
    return float((ra * rb).sum() / denominator)


@dataclass(frozen=True)
class Fidelity:
    name: str
    size: int
    reduction: int  # 1: the file was decoded in full both ways
    rho: float
    identical: bool  # the stored PNG bytes are the same


def compare_decodes(path: str | Path, size: int) -> Fidelity:
    """The stored image of one DICOM at `size`, reduced decode against full decode.

    Decodes the pixel data without the chest/radiograph policy (`decode_dataset`), so every
    real test file, hip films included, is compared.
    """
    from pydicom import dcmread

    from .decode import decode_dataset
    from .normalise import normalise_to_png, square_image

    data = Path(path).read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = decode_dataset(dcmread(io.BytesIO(data), force=True), None)
        reduced = decode_dataset(dcmread(io.BytesIO(data), force=True), size)
    a = square_image(reduced.pixels, size, reduced.geometry)
    b = square_image(full.pixels, size)
    same = normalise_to_png(reduced.pixels, size, reduced.geometry)[0] == normalise_to_png(full.pixels, size)[0]
    return Fidelity(Path(path).name, size, reduced.reduction, rank_correlation(a, b), same)
