"""Each finding's pattern is separable by a simple regional statistic (DESIGN §10)."""
from __future__ import annotations

import numpy as np
import pytest

from radsim.synthetic import FINDINGS, plan_cohort, render_exam

SIZE = 128


def _box(img: np.ndarray, x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    n = img.shape[0]
    c = lambda v: int(round((v + 1) / 2 * n))  # noqa: E731
    return img[c(y0):c(y1), c(x0):c(x1)]


def _side_box(img, s, x0, x1, y0, y1):
    """A box on side s (+1 image right, -1 image left), x given as distances from the midline."""
    return _box(img, x0, x1, y0, y1) if s > 0 else _box(img, -x1, -x0, y0, y1)


def _boxmean(img: np.ndarray, k: int) -> np.ndarray:
    c = np.pad(img, k // 2, mode="edge").cumsum(0).cumsum(1)
    c = np.pad(c, ((1, 0), (1, 0)))
    return (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)


def _blob(img):
    return _boxmean(img, 5) - _boxmean(img, 13)


def _stat(name: str, img: np.ndarray) -> float:
    m = lambda *a: float(a[0].mean())  # noqa: E731
    sides = (-1, 1)
    if name == "cardiomegaly":
        return max(m(_side_box(img, s, 0.4, 0.52, 0.12, 0.3)) for s in (1,)) - m(
            _side_box(img, 1, 0.4, 0.52, -0.35, -0.2)
        )
    if name == "enlarged_cardiomediastinum":
        return min(
            m(_side_box(img, s, 0.12, 0.2, -0.6, -0.25)) - m(_side_box(img, s, 0.3, 0.45, -0.6, -0.25)) for s in sides
        )
    if name == "lung_opacity":
        a, b = (m(_side_box(img, s, 0.2, 0.45, -0.6, -0.42)) for s in sides)
        return abs(a - b)
    if name == "lung_lesion":
        return float(max(_side_box(_blob(img), s, 0.15, 0.6, -0.5, 0.1).max() for s in sides))
    if name == "edema":
        return min(
            m(_side_box(img, s, 0.15, 0.3, -0.15, 0.1)) - m(_side_box(img, s, 0.42, 0.55, -0.45, -0.25)) for s in sides
        )
    if name == "consolidation":
        return max(
            m(_side_box(img, s, 0.32, 0.5, -0.05, 0.15)) - m(_side_box(img, -s, 0.32, 0.5, -0.05, 0.15)) for s in sides
        )
    if name == "pneumonia":
        return max(
            m(_side_box(img, s, 0.25, 0.45, -0.42, -0.2)) - m(_side_box(img, -s, 0.25, 0.45, -0.42, -0.2))
            for s in sides
        )
    if name == "atelectasis":
        best = -1.0
        for s in sides:
            rows = _side_box(img, s, 0.2, 0.5, -0.15, 0.3).mean(1)
            best = max(best, float((rows - np.convolve(rows, np.ones(9) / 9, mode="same"))[4:-4].max()))
        return best
    if name == "pneumothorax":
        return max(
            m(_side_box(img, -s, 0.35, 0.55, -0.6, -0.35)) - m(_side_box(img, s, 0.35, 0.55, -0.6, -0.35))
            for s in sides
        )
    if name == "pleural_effusion":
        return max(
            m(_side_box(img, s, 0.42, 0.58, 0.22, 0.36)) - m(_side_box(img, s, 0.42, 0.58, -0.3, -0.1)) for s in sides
        )
    if name == "pleural_other":
        return max(
            m(_side_box(img, s, 0.47, 0.56, -0.2, 0.15)) - m(_side_box(img, s, 0.3, 0.4, -0.2, 0.15)) for s in sides
        )
    if name == "fracture":
        return float(max(_side_box(_blob(img), s, 0.5, 0.75, -0.5, -0.2).max() for s in sides))
    if name == "support_devices":
        return float((img > 0.9).mean())
    if name == "emphysema":
        return -min(m(_side_box(img, s, 0.2, 0.5, 0.3, 0.42)) for s in sides)
    if name == "fibrosis":
        hp = img - _boxmean(img, 5)
        return min(float(_side_box(hp, s, 0.2, 0.5, 0.08, 0.32).std()) for s in sides)
    if name == "hiatus_hernia":
        return -float(_box(_boxmean(img, 5), -0.05, 0.2, 0.15, 0.4).min())
    raise KeyError(name)


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    allv = np.concatenate([pos, neg])
    ranks = allv.argsort().argsort() + 1.0
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _downscale(img: np.ndarray, k: int) -> np.ndarray:
    n = img.shape[0] // k
    return img[: n * k, : n * k].reshape(n, k, n, k).mean(axis=(1, 3))


@pytest.fixture(scope="module")
def rendered():
    """Rendered at 256 px (the native path's working resolution) and downscaled to 128, as training will."""
    specs = plan_cohort(exams=700, seed=3)
    return specs, [_downscale(render_exam(s, 0, 2 * SIZE), 2) for s in specs]


@pytest.mark.parametrize("name", FINDINGS)
def test_simple_statistic_separates_each_finding(rendered, name):
    specs, images = rendered
    stats = np.array([_stat(name, im) for im in images])
    has = np.array([name in s.findings for s in specs])
    assert has.sum() >= 10
    auc = _auc(stats[has], stats[~has])
    assert auc >= 0.8, f"{name}: AUC {auc:.3f}"
