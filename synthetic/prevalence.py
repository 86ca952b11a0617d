"""The cohort's fixed prevalence table: clinical scenarios with co-occurring findings.

Findings are drawn per exam from one *scenario* (normal, heart failure, infection, ...),
each giving an independent probability per finding, plus a few incidental findings on
abnormal exams. Because every term is a plain Bernoulli, the expected marginal prevalence
is computed exactly (`expected_prevalence`), so tests can hold the sampler to the table.
Support devices depend on the view: AP (portable, sicker patients) films carry far more.
"""
from __future__ import annotations

import numpy as np

from radsim.data_contracts import default_vocabulary
from radsim.data_contracts.vocabulary import OTHER_ABNORMALITY

# The catch-all has no image pattern: the cohort neither draws it nor writes reports that name it.
FINDINGS: tuple[str, ...] = tuple(f for f in default_vocabulary().observed if f != OTHER_ABNORMALITY)

# scenario -> (weight, {finding: probability}); "normal" has no findings (devices aside).
SCENARIOS: dict[str, tuple[float, dict[str, float]]] = {
    "normal": (0.35, {}),
    "cardiac": (
        0.065,
        {"cardiomegaly": 1.0, "pleural_effusion": 0.25, "enlarged_cardiomediastinum": 0.2, "edema": 0.1},
    ),
    "heart_failure": (0.06, {"edema": 1.0, "cardiomegaly": 0.75, "pleural_effusion": 0.6}),
    "infection": (0.07, {"pneumonia": 1.0, "consolidation": 0.55, "pleural_effusion": 0.2, "lung_opacity": 0.15}),
    "consolidation": (0.04, {"consolidation": 1.0, "atelectasis": 0.25, "lung_opacity": 0.2}),
    "opacity": (0.05, {"lung_opacity": 1.0, "atelectasis": 0.2, "consolidation": 0.1}),
    "atelectasis": (0.05, {"atelectasis": 1.0, "pleural_effusion": 0.25, "lung_opacity": 0.1}),
    "effusion": (0.05, {"pleural_effusion": 1.0, "atelectasis": 0.3, "pleural_other": 0.1}),
    "lesion": (0.05, {"lung_lesion": 1.0, "enlarged_cardiomediastinum": 0.1, "pleural_effusion": 0.1}),
    "pneumothorax": (0.035, {"pneumothorax": 1.0, "fracture": 0.2, "pleural_effusion": 0.1}),
    "trauma": (0.025, {"fracture": 1.0, "pneumothorax": 0.25, "pleural_other": 0.2}),
    "copd": (0.045, {"emphysema": 1.0, "lung_lesion": 0.1, "pneumonia": 0.1}),
    "ild": (0.035, {"fibrosis": 1.0, "lung_opacity": 0.2}),
    "pleural": (0.025, {"pleural_other": 1.0, "pleural_effusion": 0.2}),
    "mediastinal": (0.025, {"enlarged_cardiomediastinum": 1.0, "lung_lesion": 0.2}),
    "hernia": (0.025, {"hiatus_hernia": 1.0}),
}
# Incidental findings on any abnormal exam, independent of the scenario.
INCIDENTAL: dict[str, float] = {
    "hiatus_hernia": 0.02,
    "emphysema": 0.03,
    "fracture": 0.02,
    "lung_lesion": 0.02,
    "pleural_other": 0.02,
}
# P(AP view | normal), P(AP view | abnormal)
P_AP = (0.15, 0.32)
# P(support devices | view, normal/abnormal): rows PA, AP; columns normal, abnormal
P_DEVICES = np.array([[0.03, 0.08], [0.20, 0.55]])


def _matrices() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    names = list(SCENARIOS)
    weights = np.array([SCENARIOS[s][0] for s in names])
    probs = np.zeros((len(names), len(FINDINGS)))
    for i, s in enumerate(names):
        for f, p in SCENARIOS[s][1].items():
            probs[i, FINDINGS.index(f)] = p
    extra = np.zeros(len(FINDINGS))
    for f, p in INCIDENTAL.items():
        extra[FINDINGS.index(f)] = p
    return weights, probs, extra


def expected_prevalence() -> dict[str, float]:
    """Exact expected marginal prevalence of each finding (and `no_finding`) under the table."""
    weights, probs, extra = _matrices()
    abnormal = np.array([s != "normal" for s in SCENARIOS])
    p = 1 - (1 - probs) * (1 - extra[None, :] * abnormal[:, None])
    marg = weights @ p
    p_abn = float(weights[abnormal].sum())
    dev = 0.0
    for ab, w in ((0, 1 - p_abn), (1, p_abn)):
        dev += w * ((1 - P_AP[ab]) * P_DEVICES[0, ab] + P_AP[ab] * P_DEVICES[1, ab])
    out = {f: float(m) for f, m in zip(FINDINGS, marg)}
    out["support_devices"] = float(dev)
    out["no_finding"] = float(weights[~abnormal].sum())
    return out


def sample_findings(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw `n` exams: (present bool[n, len(FINDINGS)], is_ap bool[n], scenario index int[n]).

    Abnormal scenarios always carry their core finding, so `no_finding` is exactly the
    normal-scenario share in expectation.
    """
    weights, probs, extra = _matrices()
    scen = rng.choice(len(weights), size=n, p=weights / weights.sum())
    abnormal = scen != list(SCENARIOS).index("normal")
    u = rng.random((n, len(FINDINGS)))
    present = u < probs[scen]
    present |= (rng.random((n, len(FINDINGS))) < extra[None, :]) & abnormal[:, None]
    is_ap = rng.random(n) < np.where(abnormal, P_AP[1], P_AP[0])
    dev = rng.random(n) < P_DEVICES[is_ap.astype(int), abnormal.astype(int)]
    present[:, FINDINGS.index("support_devices")] = dev
    return present, is_ap, scen
