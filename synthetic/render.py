"""Chest-like radiographs with one distinct, learnable pattern per finding.

Images are built in normalised coordinates (x, y in [-1, 1], y down, patient's right on
the image left) at a working resolution of at most 256 px, then resized to the output size
with full-resolution noise added. Patterns are sized in normalised units, so they survive
a 4x downscale (512 -> 128 px). Everything is vectorised numpy; the returned image is
display-oriented float32 in [0, 1] with bright = dense (bone, metal).

Where each finding lives (so that a CNN, and a simple regional statistic, can tell them apart):
  cardiomegaly         wider heart                     enlarged_cardiomediastinum  wider upper mediastinum
  pleural_effusion     bright meniscus, costophrenic   pneumothorax      dark marking-free apex + pleural line
  lung_lesion          round bright nodule(s), mid zone support_devices  bright lines/tubes, box device
  fracture             rib step + callus, lateral upper emphysema         dark lungs, low flat diaphragm
  fibrosis             reticular net, lower zones      hiatus_hernia     retrocardiac air-fluid bubble
  edema                bilateral perihilar haze        consolidation     dense homogeneous lower-zone patch
  pneumonia            fluffy multifocal upper/mid     atelectasis       thin horizontal band, mid-lower zone
  lung_opacity         faint haze over one whole lung  pleural_other     lateral chest wall thickening band
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image

WORK_MAX = 256
SIDE = {"right": -1.0, "left": 1.0}  # patient's right is on the image's left


@lru_cache(maxsize=8)
def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    c = (np.arange(n, dtype=np.float32) + 0.5) / n * 2 - 1
    return np.broadcast_to(c[None, :], (n, n)), np.broadcast_to(c[:, None], (n, n))


def _ramp(z: np.ndarray, edge: float) -> np.ndarray:
    """Soft step: 0 for z <= 0, 1 for z >= edge."""
    return np.clip(z * (1.0 / edge), 0.0, 1.0)


def _ellipse(X, Y, cx, cy, a, b, edge=0.08):
    r = np.sqrt(((X - cx) / a) ** 2 + ((Y - cy) / b) ** 2)
    return _ramp(1.0 - r, edge), r


def _segments(X, Y, pts, half_width, edge):
    """Soft mask of a polyline of points [(x, y), ...]."""
    d = np.full(X.shape, 9.0, dtype=np.float32)
    for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:]):
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((X - x0) * dx + (Y - y0) * dy) / (dx * dx + dy * dy + 1e-9), 0, 1)
        d = np.minimum(d, np.hypot(X - x0 - t * dx, Y - y0 - t * dy))
    return _ramp(half_width + edge - d, edge)


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    if img.shape[0] == size:
        return img
    return np.array(Image.fromarray(img, mode="F").resize((size, size), Image.BILINEAR), dtype=np.float32)


@dataclass
class _Chest:
    """The frontal image being drawn, and the anatomy the findings are placed against."""

    X: np.ndarray
    Y: np.ndarray
    img: np.ndarray
    lw: float  # chest width
    lh: float
    d0: float  # diaphragm dome height
    lungs: list = field(default_factory=list)  # (side, centre x, mask, radius, dome) per hemithorax
    lung: Any = None
    heart: Any = None
    ribs: Any = None

    def side_lung(self, side: float) -> tuple:
        return self.lungs[0 if side < 0 else 1]


def render_frontal(findings: Mapping[str, Mapping[str, Any]], rng: np.random.Generator, size: int) -> np.ndarray:
    """A PA/AP chest image showing exactly the findings in `findings` (name -> attributes).

    The random draws happen in a fixed order (pose, anatomy, then each finding in
    FRONTAL_FINDINGS order), so a seed always gives the same image.
    """
    n = min(size, WORK_MAX)
    chest = _frontal_anatomy(*_pose(rng, n), findings, rng, n)
    for name, paint in FRONTAL_FINDINGS:
        if name in findings:
            paint(chest, findings[name], rng)
    return _finish(chest.img, rng, size)


def _pose(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised coordinates after a small rotation, shift and scale."""
    gx, gy = _grid(n)
    th = np.deg2rad(rng.uniform(-4, 4))
    dx, dy, sc = rng.uniform(-0.04, 0.04), rng.uniform(-0.04, 0.04), rng.uniform(0.95, 1.04)
    c, s = np.float32(np.cos(th)), np.float32(np.sin(th))
    return (c * (gx - dx) + s * (gy - dy)) / sc, (-s * (gx - dx) + c * (gy - dy)) / sc


def _frontal_anatomy(X: np.ndarray, Y: np.ndarray, f: Mapping[str, Mapping[str, Any]], rng: np.random.Generator,
                     n: int) -> _Chest:
    lw = rng.uniform(0.93, 1.05)
    lh = rng.uniform(0.95, 1.05)
    hw = rng.uniform(0.92, 1.06)  # heart width
    d0 = rng.uniform(0.34, 0.42)
    dk = 0.16
    if "emphysema" in f:  # low flat diaphragm, taller lungs
        d0 += 0.11
        dk = 0.04
        lh *= 1.06
    chest = _Chest(X, Y, np.full((n, n), 0.04, dtype=np.float32), lw, lh, d0)
    body, _ = _ellipse(X, Y, 0.0, 0.12, 0.96 * lw, 1.2, 0.06)
    chest.img += 0.36 * body
    for side in (-1.0, 1.0):
        cx = side * 0.36 * lw
        ell, r = _ellipse(X, Y, cx, -0.1, 0.27 * lw, 0.64 * lh, 0.1)
        dome = d0 - (0.02 if side < 0 else 0.0) + dk * ((X - cx) / (0.3 * lw)) ** 2
        chest.lungs.append((side, cx, ell * _ramp(dome - Y, 0.03), r, dome))
    chest.lung = chest.lungs[0][2] + chest.lungs[1][2]
    chest.img -= 0.25 * chest.lung
    chest.img += chest.lung * (0.07 * _ramp(0.55 - np.abs(np.abs(X) - 0.12), 0.55))  # vessels, towards the hila
    _ribs(chest, f, rng)
    _heart_and_mediastinum(chest, f, rng, hw, body)
    gb, _ = _ellipse(X, Y, 0.33 * lw, d0 + 0.12, 0.09, 0.05, 0.3)  # gastric bubble under the left hemidiaphragm
    chest.img -= 0.12 * gb
    return chest


def _ribs(chest: _Chest, f: Mapping[str, Mapping[str, Any]], rng: np.random.Generator) -> None:
    """Posterior rib arcs over the hemithoraces (a fracture steps one and adds callus), and the clavicles."""
    X, Y, lw = chest.X, chest.Y, chest.lw
    thorax, _ = _ellipse(X, Y, 0.0, -0.1, 0.7 * lw, 0.78 * chest.lh, 0.06)
    rib_phase = (Y + 0.45 * X * X) / 0.145 + rng.uniform(0, 1)
    if "fracture" in f:
        fs = SIDE[f["fracture"].get("side", "left")]
        fy = rng.uniform(-0.45, -0.28)
        zone, _ = _ellipse(X, Y, fs * 0.62 * lw, fy, 0.16, 0.1, 0.3)
        rib_phase = rib_phase + 0.5 * zone * (X * fs > 0.62 * lw)
    chest.ribs = _ramp(np.cos(2 * np.pi * rib_phase) - 0.45, 0.35) * thorax * (np.abs(X) > 0.08)
    chest.img += 0.085 * chest.ribs
    if "fracture" in f:
        callus, _ = _ellipse(X, Y, fs * 0.62 * lw, fy, 0.055, 0.045, 0.4)
        chest.img += 0.24 * callus
    for side in (-1.0, 1.0):
        chest.img += 0.13 * _segments(X, Y, [(side * 0.08, -0.72), (side * 0.62 * lw, -0.84)], 0.025, 0.02)


def _heart_and_mediastinum(chest: _Chest, f: Mapping[str, Mapping[str, Any]], rng: np.random.Generator, hw: float,
                           body: np.ndarray) -> None:
    """The heart (wider with cardiomegaly), the mediastinum (wider above when enlarged), spine and trachea."""
    X, Y, img = chest.X, chest.Y, chest.img
    hwf = hw * (1.0 + {"mild": 0.28, "moderate": 0.38, "severe": 0.48}[f["cardiomegaly"].get("severity", "moderate")]
                if "cardiomegaly" in f else 1.0)
    chest.heart, _ = _ellipse(X, Y, 0.09 + (0.06 if "cardiomegaly" in f else 0.0), 0.25, 0.27 * hwf, 0.22, 0.15)
    img += chest.heart * (0.18 + 0.25 * chest.lung)  # the heart hides the lung behind it
    mw = 0.1 + (rng.uniform(0.1, 0.13) if "enlarged_cardiomediastinum" in f else 0.0)
    upper = _ramp(0.15 - Y, 0.2) * _ramp(Y + 0.95, 0.05)
    width = np.where(Y < 0.0, mw, 0.1 + (mw - 0.1) * _ramp(0.25 - Y, 0.25))
    img += 0.27 * upper * _ramp(width - np.abs(X - 0.01), 0.03)
    img += (0.12 + 0.03 * np.cos(2 * np.pi * Y / 0.085)) * _ramp(0.06 - np.abs(X), 0.015) * body
    img -= 0.14 * _ramp(0.028 - np.abs(X), 0.01) * _ramp(-0.32 - Y, 0.05)


def _emphysema(ch: _Chest, spec: Mapping[str, Any], rng: np.random.Generator) -> None:
    ch.img -= 0.075 * ch.lung


def _edema(ch: _Chest, spec: Mapping[str, Any], rng: np.random.Generator) -> None:
    for side in (-1.0, 1.0):
        haze, _ = _ellipse(ch.X, ch.Y, side * 0.2, -0.02, 0.24, 0.3, 0.8)
        ch.img += 0.16 * haze * ch.lung


def _lung_opacity(ch: _Chest, spec: Mapping[str, Any], rng: np.random.Generator) -> None:
    ch.img += 0.13 * ch.side_lung(SIDE[spec.get("side", "right")])[2]


def _pleural_other(ch: _Chest, spec: Mapping[str, Any], rng: np.random.Generator) -> None:
    side = SIDE[spec.get("side", "right")]
    X, Y, r = ch.X, ch.Y, ch.side_lung(side)[3]
    band = _ramp(r - 0.6, 0.08) * _ramp(1.04 - r, 0.04) * _ramp(X * side - 0.4 * ch.lw, 0.05)
    band *= _ramp(Y + 0.3, 0.06) * _ramp(0.3 - Y, 0.06)
    ch.img += 0.22 * band
    for _ in range(int(rng.integers(2, 4))):  # calcified plaques along the wall
        py = rng.uniform(-0.2, 0.2)
        plaque, _ = _ellipse(X, Y, side * 0.57 * ch.lw, py, 0.025, 0.05, 0.4)
        ch.img += 0.18 * plaque


def _consolidation(ch: _Chest, spec: Mapping[str, Any], rng: np.random.Generator) -> None:
    side = SIDE[spec.get("side", "right")]
    cx, cy = side * rng.uniform(0.37, 0.43) * ch.lw, rng.uniform(0.0, 0.1)
    patch = np.zeros_like(ch.img)
    for _ in range(4):
        e, _ = _ellipse(ch.X, ch.Y, cx + rng.uniform(-0.07, 0.07), cy + rng.uniform(-0.05, 0.05),
                        rng.uniform(0.08, 0.12), rng.uniform(0.07, 0.1), 0.35)
        patch = np.maximum(patch, e)
    ch.img += 0.27 * patch * ch.side_lung(side)[2]


def _pneumonia(ch: _Chest, spec: Mapping[str, Any], rng: np.random.Generator) -> None:
    side = SIDE[spec.get("side", "right")]
    cx, cy = side * rng.uniform(0.32, 0.4) * ch.lw, rng.uniform(-0.38, -0.25)
    fluff = np.zeros_like(ch.img)
    for _ in range(12):
        e, _ = _ellipse(ch.X, ch.Y, cx + rng.normal(0, 0.08), cy + rng.normal(0, 0.07),
                        rng.uniform(0.03, 0.05), rng.uniform(0.03, 0.05), 0.9)
        fluff += e
    ch.img += 0.23 * np.minimum(fluff, 1.3) * ch.side_lung(side)[2]


def _atelectasis(ch: _Chest, spec: Mapping[str, Any], rng: np.random.Generator) -> None:
    side = SIDE[spec.get("side", "right")]
    y0, tilt = rng.uniform(0.02, 0.12), rng.uniform(-0.08, 0.08)
    band = _segments(ch.X, ch.Y, [(side * 0.14, y0 - tilt), (side * 0.58 * ch.lw, y0 + tilt)], 0.018, 0.012)
    ch.img += 0.24 * band * np.minimum(ch.side_lung(side)[2] * 1.5, 1.0)


def _fibrosis(ch: _Chest, spec: Mapping[str, Any], rng: np.random.Generator) -> None:
    X, Y = ch.X, ch.Y
    ph1, ph2, p = rng.uniform(0, 1), rng.uniform(0, 1), 0.075
    net = np.maximum(_ramp(np.cos(2 * np.pi * ((X + 0.5 * Y) / p + ph1)) - 0.6, 0.25),
                     _ramp(np.cos(2 * np.pi * ((Y - 0.4 * X) / p + ph2)) - 0.6, 0.25))
    ch.img += 0.13 * net * ch.lung * _ramp(Y + 0.05, 0.15)


def _lung_lesion(ch: _Chest, spec: Mapping[str, Any], rng: np.random.Generator) -> None:
    side = SIDE[spec.get("side", "right")]
    for k in range(int(spec.get("count", 1))):
        r0 = rng.uniform(0.04, 0.065) * (1.5 if spec.get("kind") == "mass" and k == 0 else 1.0)
        nod, _ = _ellipse(ch.X, ch.Y, side * rng.uniform(0.22, 0.5) * ch.lw, rng.uniform(-0.45, 0.05), r0, r0, 0.3)
        ch.img += 0.3 * nod


def _pleural_effusion(ch: _Chest, spec: Mapping[str, Any], rng: np.random.Generator) -> None:
    size_h = {"small": 0.12, "moderate": 0.2, "large": 0.32}[spec.get("size", "moderate")]
    sides = (-1.0, 1.0) if spec.get("side") == "bilateral" else (SIDE[spec.get("side", "right")],)
    for side in sides:
        _, cx, m, r, dome = ch.side_lung(side)
        ell = _ramp(1.0 - r, 0.1)
        level = (ch.d0 + 0.02 - size_h) - 1.2 * size_h * np.clip(
            (ch.X * side - 0.28 * ch.lw) / (0.36 * ch.lw), 0, 1
        ) ** 2
        fluid = ell * _ramp(ch.Y - level, 0.05) * _ramp(dome + 0.1 - ch.Y, 0.05)
        ch.img += 0.3 * fluid * (1.0 - 0.6 * ch.heart)


def _pneumothorax(ch: _Chest, spec: Mapping[str, Any], rng: np.random.Generator) -> None:
    side = SIDE[spec.get("side", "right")]
    _, cx, m, r, _ = ch.side_lung(side)
    depth = {"small": 0.2, "moderate": 0.28, "large": 0.38}[spec.get("size", "moderate")]
    # the collapsed lung: an ellipse pulled medially and down, inside the hemithorax
    ecx = cx - side * depth * 0.45
    _, rc = _ellipse(ch.X, ch.Y, ecx, -0.1 + depth * 0.6, 0.27 * ch.lw - depth * 0.3, 0.64 * ch.lh - depth * 0.6)
    air = m * _ramp(rc - 1.0, 0.03) * _ramp(0.1 - ch.Y, 0.1)
    ch.img -= 0.13 * air + 0.07 * air * ch.ribs
    line = m * _ramp(0.018 - np.abs(rc - 1.0), 0.012) * _ramp(0.1 - ch.Y, 0.1)
    ch.img += 0.14 * line


def _hiatus_hernia(ch: _Chest, spec: Mapping[str, Any], rng: np.random.Generator) -> None:
    hx, hy, hr = rng.uniform(0.0, 0.1), rng.uniform(0.24, 0.32), rng.uniform(0.075, 0.1)
    bub, _ = _ellipse(ch.X, ch.Y, hx, hy, hr, hr * 0.9, 0.15)
    lvl = hy + rng.uniform(-0.01, 0.02)
    ch.img -= 0.3 * bub * _ramp(lvl - ch.Y, 0.01)
    ch.img += 0.06 * bub * _ramp(ch.Y - lvl, 0.01)


def _support_devices(ch: _Chest, spec: Mapping[str, Any], rng: np.random.Generator) -> None:
    _devices(ch.img, ch.X, ch.Y, spec.get("devices", ("ett",)), ch.d0)


# Drawing order (and so the order of the random draws) of the frontal findings.
FRONTAL_FINDINGS: tuple[tuple[str, Callable[[_Chest, Mapping[str, Any], np.random.Generator], None]], ...] = (
    ("emphysema", _emphysema), ("edema", _edema), ("lung_opacity", _lung_opacity), ("pleural_other", _pleural_other),
    ("consolidation", _consolidation), ("pneumonia", _pneumonia), ("atelectasis", _atelectasis),
    ("fibrosis", _fibrosis), ("lung_lesion", _lung_lesion), ("pleural_effusion", _pleural_effusion),
    ("pneumothorax", _pneumothorax), ("hiatus_hernia", _hiatus_hernia), ("support_devices", _support_devices),
)


def _devices(img, X, Y, devices, d0) -> None:
    hw, e = 0.014, 0.01
    m = np.zeros_like(img)
    for dev in devices:
        if dev == "ett":
            m = np.maximum(m, _segments(X, Y, [(0.0, -1.0), (0.0, -0.5)], hw, e))
        elif dev == "ngt":
            m = np.maximum(m, _segments(X, Y, [(-0.03, -1.0), (-0.02, 0.0), (0.1, d0 + 0.1), (0.3, d0 + 0.16)], hw, e))
        elif dev == "central_line":
            m = np.maximum(m, _segments(X, Y, [(-0.3, -1.0), (-0.2, -0.75), (-0.08, -0.55), (-0.06, -0.3)], hw, e))
        elif dev == "pacemaker":
            box = _ramp(0.085 - np.abs(X - 0.5), 0.01) * _ramp(0.055 - np.abs(Y + 0.8), 0.01)
            m = np.maximum(m, box)
            m = np.maximum(m, _segments(X, Y, [(0.45, -0.78), (0.15, -0.6), (0.02, -0.2), (-0.05, 0.3)], hw * 0.8, e))
        elif dev == "chest_drain":
            m = np.maximum(m, _segments(X, Y, [(0.8, 0.25), (0.62, 0.15), (0.35, -0.45)], hw * 1.2, e))
    img += 0.7 * m


def _finish(img: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """Exposure, heel effect, resize and noise; clip to [0, 1]."""
    n = img.shape[0]
    _, gy = _grid(n)
    img *= 1.0 + rng.uniform(-0.05, 0.05) * gy
    a, b, g = rng.uniform(0.92, 1.08), rng.uniform(-0.03, 0.03), rng.uniform(0.88, 1.12)
    img = np.clip(a * img + b, 0.0, 1.0) ** np.float32(g)
    img = _resize(np.ascontiguousarray(img, dtype=np.float32), size)
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(0.008, 0.02))
    return np.clip(img, 0.0, 1.0, out=img)


def render_lateral(findings: Mapping[str, Mapping[str, Any]], rng: np.random.Generator, size: int) -> np.ndarray:
    """A lateral view (patient facing image left): heart anterior, spine posterior."""
    n = min(size, WORK_MAX)
    gx, gy = _grid(n)
    th = np.deg2rad(rng.uniform(-3, 3))
    c, s = np.float32(np.cos(th)), np.float32(np.sin(th))
    X, Y = c * gx + s * gy, -s * gx + c * gy
    f = findings
    img = np.full((n, n), 0.04, dtype=np.float32)
    body, _ = _ellipse(X, Y, 0.0, 0.1, 0.8, 1.2, 0.06)
    img += 0.38 * body
    d0 = rng.uniform(0.35, 0.45) + (0.1 if "emphysema" in f else 0.0)
    lung, _ = _ellipse(X, Y, 0.02, -0.1, 0.6, 0.7, 0.1)
    lung *= _ramp(d0 + 0.12 * (X + 0.2) ** 2 - Y, 0.03)
    img -= (0.3 if "emphysema" in f else 0.24) * lung
    heart, _ = _ellipse(X, Y, -0.3, 0.2, 0.3 * (1.35 if "cardiomegaly" in f else 1.0), 0.25, 0.15)
    img += 0.22 * heart
    spine = _ramp(0.09 - np.abs(X - 0.55 - 0.05 * Y), 0.02) * body
    img += (0.16 + 0.05 * np.cos(2 * np.pi * Y / 0.1)) * spine
    if "pleural_effusion" in f:
        img += 0.25 * lung * _ramp(Y - (d0 - 0.12) + 0.3 * np.clip(X - 0.2, 0, 1), 0.04)
    if "lung_lesion" in f:
        nod, _ = _ellipse(X, Y, rng.uniform(-0.2, 0.3), rng.uniform(-0.4, 0.0), 0.05, 0.05, 0.3)
        img += 0.24 * nod
    for name in ("consolidation", "pneumonia"):
        if name in f:
            e, _ = _ellipse(X, Y, rng.uniform(-0.1, 0.3), rng.uniform(-0.2, 0.2), 0.15, 0.12, 0.5)
            img += 0.2 * e * lung
    if "hiatus_hernia" in f:
        bub, _ = _ellipse(X, Y, 0.15, 0.3, 0.09, 0.08, 0.15)
        img -= 0.25 * bub * _ramp(0.3 - Y, 0.01)
    if "support_devices" in f:
        img += 0.6 * _segments(X, Y, [(-0.1, -1.0), (-0.05, -0.4), (0.0, 0.2)], 0.014, 0.01)
    return _finish(img, rng, size)
