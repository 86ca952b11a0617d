"""Radiology report text for a synthetic exam, with exactly what the text asserts.

Every sentence is built from a template that asserts one status for one or more findings
(1 present, 0 negated or resolved, -1 uncertain) and mentions no other finding's phrase,
so `report_truth` is what a careful reader would say. Section headers follow DESIGN §6:
INDICATION/HISTORY/CLINICAL DETAILS text may name findings ("?pneumothorax") that do not
count; FINDINGS and IMPRESSION (or a report without headers) assert.

Phrases that assert a finding without using one of its vocabulary synonyms are listed in
IMPLICIT_PHRASES, so the label stage can handle them.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from radsim.data_contracts import NO_FINDING, OTHER_ABNORMALITY, SUPPORT_DEVICES

from .report_phrases import (
    FILLERS,
    HEDGE,
    INDICATIONS_MENTION,
    INDICATIONS_NEUTRAL,
    NEG_NOUNS,
    NEG_SINGLE,
    NORMAL_IMPRESSIONS,
    POSITIVE,
    RESOLVED,
    STABLE,
    TYPOS,
    Attrs,
    Rng,
    _pick,
)

__all__ = ["IMPLICIT_PHRASES", "TYPOS", "Report", "compose_report", "no_finding_value"]

# Phrases that assert a value without a vocabulary synonym (the label stage must know them).
IMPLICIT_PHRASES: dict[str, tuple[str, int]] = {
    "heart size is normal": ("cardiomegaly", 0),
    "normal heart size": ("cardiomegaly", 0),
}
# P(an absent finding is explicitly negated)
P_NEGATE: dict[str, float] = {
    "pneumothorax": 0.6, "pleural_effusion": 0.6, "consolidation": 0.5, "cardiomegaly": 0.5, "edema": 0.2,
    "enlarged_cardiomediastinum": 0.1, "lung_lesion": 0.1, "fracture": 0.1, "pneumonia": 0.1, "atelectasis": 0.05,
    "emphysema": 0.03, "fibrosis": 0.03, "hiatus_hernia": 0.02, "pleural_other": 0.03, "lung_opacity": 0.08,
}
P_PRESENT_HEDGED, P_PRESENT_STABLE = 0.08, 0.1
P_ABSENT_RESOLVED, P_ABSENT_HEDGED = 0.08, 0.06  # per report
P_NO_HEADERS, P_TYPO = 0.3, 0.25


@dataclass
class Report:
    text: str
    values: dict[str, int | None]  # observed finding -> 1/0/-1/None, plus no_finding
    omitted: list[str] = field(default_factory=list)
    overcalled: list[str] = field(default_factory=list)


def no_finding_value(values: Mapping[str, int | None]) -> int:
    """DESIGN §6: 1 when no finding other than support_devices is 1 or -1."""
    return int(not any(v in (1, -1) for f, v in values.items() if f not in (NO_FINDING, SUPPORT_DEVICES)))


def _join_nouns(nouns: list[str]) -> str:
    return nouns[0] if len(nouns) == 1 else ", ".join(nouns[:-1]) + " or " + nouns[-1]


def _negations(rng: Rng, names: list[str]) -> list[str]:
    out: list[str] = []
    rest = []
    for f in names:
        if f in NEG_SINGLE and rng.random() < 0.6:
            out.append(_pick(rng, NEG_SINGLE[f]))
        else:
            rest.append(f)
    rng.shuffle(rest)
    while rest:
        k = int(min(len(rest), rng.integers(1, 4)))
        group, rest = rest[:k], rest[k:]
        nouns = _join_nouns([_pick(rng, NEG_NOUNS[f]) for f in group])
        out.append(_pick(rng, ["No {}.", "No {}.", "No evidence of {}.", "There is no {}."]).format(nouns))
    return out


def compose_report(rng: Rng, present: Mapping[str, Attrs], all_findings: tuple[str, ...], *,
                   omission_rate: float, overcall_rate: float, view: str = "PA",
                   overcall_attrs: Callable[[str], Attrs] | None = None) -> Report:
    """Write one report for an exam whose image shows `present` (finding -> attributes).

    `omission_rate`: each present finding is left out with this probability. `overcall_rate`:
    with this probability one absent finding is reported present. `values` follows the text.
    The random draws happen in a fixed order (statuses, body, impression, layout, typo), so a
    seed always gives the same report.
    """
    said = _statuses(rng, present, all_findings, omission_rate, overcall_rate, overcall_attrs)
    values: dict[str, int | None] = {f: None for f in all_findings}
    body = _findings_body(rng, said, values, all_findings)
    text = _layout(rng, body, _impression(rng, said.reported), present, view)
    if rng.random() < P_TYPO:
        text = _typo(rng, text)
    if "abnormality" in text:  # only NORMAL_IMPRESSIONS say it, always in an asserting section
        values[OTHER_ABNORMALITY] = 0  # "no acute abnormality" negates the catch-all (vocabulary criteria)
    values[NO_FINDING] = no_finding_value(values)
    return Report(text=text, values=values, omitted=said.omitted, overcalled=said.overcalled)


@dataclass
class _Said:
    """What a report will assert: finding -> (status, attributes), 2 = present and stable."""

    reported: dict[str, tuple[int, Attrs]]
    omitted: list[str]
    overcalled: list[str]
    negated: list[str]
    extra_sentences: list[str]


def _statuses(rng: Rng, present: Mapping[str, Attrs], all_findings: tuple[str, ...], omission_rate: float,
              overcall_rate: float, overcall_attrs: Callable[[str], Attrs] | None) -> _Said:
    omitted = [f for f in present if rng.random() < omission_rate]
    reported: dict[str, tuple[int, Attrs]] = {}
    for f, a in present.items():
        if f in omitted:
            continue
        u = rng.random()
        if f != SUPPORT_DEVICES and u < P_PRESENT_HEDGED:
            reported[f] = (-1, a)
        else:
            reported[f] = (2 if (f != SUPPORT_DEVICES and u < P_PRESENT_HEDGED + P_PRESENT_STABLE) else 1, a)
    absent = [f for f in all_findings if f not in present and f != SUPPORT_DEVICES]
    overcalled: list[str] = []
    if absent and rng.random() < overcall_rate:
        f = _pick(rng, absent)
        overcalled.append(f)
        reported[f] = (1, overcall_attrs(f) if overcall_attrs else {"side": _pick(rng, ["left", "right"])})
    negated, extra_sentences = [], []
    # at most one resolved (0) or hedged (-1) mention of an absent finding per report
    special = rng.random()
    resolvable = [f for f in absent if f in RESOLVED and f not in reported]
    if special < P_ABSENT_RESOLVED and resolvable:
        f = _pick(rng, resolvable)
        reported[f] = (0, {"side": _pick(rng, ["left", "right"])})
        extra_sentences.append(_pick(rng, RESOLVED[f])(reported[f][1], rng))
    elif special < P_ABSENT_RESOLVED + P_ABSENT_HEDGED and [f for f in absent if f not in reported]:
        f = _pick(rng, [f for f in absent if f not in reported])
        reported[f] = (-1, {"side": _pick(rng, ["left", "right"])})
    for f in absent:
        if f not in reported and rng.random() < P_NEGATE.get(f, 0.0):
            negated.append(f)
    return _Said(reported, omitted, overcalled, negated, extra_sentences)


def _findings_body(rng: Rng, said: _Said, values: dict[str, int | None], all_findings: tuple[str, ...]) -> list[str]:
    """The findings section's sentences; `values` gets the status each one asserts."""
    pos_sentences: list[str] = []
    hedge_sentences: list[str] = []
    for f, (status, a) in said.reported.items():
        if status == 1:
            pos_sentences.append(_pick(rng, POSITIVE[f])(a, rng))
        elif status == 2:
            pos_sentences.append(_pick(rng, STABLE[f])(a, rng))
        elif status == -1:
            hedge_sentences.append(_pick(rng, HEDGE[f])(a, rng))
        values[f] = {2: 1}.get(status, status)
    for f in said.negated:
        values[f] = 0
    rng.shuffle(pos_sentences)
    neg_sentences = _negations(rng, said.negated)
    if pos_sentences and neg_sentences and rng.random() < 0.15 and pos_sentences[-1].startswith("There is"):
        tail = neg_sentences.pop(0)
        if tail.startswith("No ") and not tail.startswith("No evidence"):
            pos_sentences[-1] = pos_sentences[-1][:-1] + " but no " + tail[3:]
        else:
            neg_sentences.insert(0, tail)
    body = pos_sentences + hedge_sentences + said.extra_sentences + neg_sentences
    if not any(values.get(f) in (1, -1) for f in all_findings if f != SUPPORT_DEVICES) and rng.random() < 0.6:
        body.insert(int(rng.integers(0, len(body) + 1)), "The lungs are clear.")
    if rng.random() < 0.35:
        body.insert(0, _pick(rng, FILLERS))
    return body or ["The lungs are clear."]


def _impression(rng: Rng, reported: Mapping[str, tuple[int, Attrs]]) -> list[str]:
    """Restates asserted statuses, never a new one."""
    abnormal = [f for f, (s, _) in reported.items() if s in (1, 2, -1) and f != SUPPORT_DEVICES]
    if not abnormal:
        return [_pick(rng, NORMAL_IMPRESSIONS)]
    impression = []
    for f in abnormal[:3]:
        s, a = reported[f]
        impression.append(_pick(rng, HEDGE[f] if s == -1 else POSITIVE[f])(a, rng))
    return impression


def _layout(rng: Rng, body: list[str], impression: list[str], present: Mapping[str, Attrs], view: str) -> str:
    if rng.random() < P_NO_HEADERS:
        sep = _pick(rng, [" ", "\n"])
        text = " ".join(body)
        if rng.random() < 0.5:
            text += sep + " ".join(impression)
        return text
    ind = _pick(rng, INDICATIONS_MENTION) if rng.random() < 0.4 else _pick(rng, INDICATIONS_NEUTRAL)
    ind_header = _pick(rng, ["INDICATION", "HISTORY", "CLINICAL DETAILS"])
    imp_header = _pick(rng, ["IMPRESSION", "IMPRESSION", "CONCLUSION", "OPINION"])
    title = rng.random() < 0.15
    hdr = (lambda h: h.title()) if title else (lambda h: h)
    parts = [f"{hdr(ind_header)}: {ind}"]
    if rng.random() < 0.2:
        parts.append(f"{hdr('TECHNIQUE')}: {view} chest radiograph.")
    inline = rng.random() < 0.5
    if inline:
        parts.append(f"{hdr('FINDINGS')}: " + " ".join(body))
        parts.append(f"{hdr(imp_header)}: " + " ".join(impression))
        return "\n".join(parts)
    parts.append(f"{hdr('FINDINGS')}:\n" + " ".join(body))
    parts.append(f"{hdr(imp_header)}:\n" + "\n".join(impression))
    return "\n\n".join(parts)


def _typo(rng: Rng, text: str) -> str:
    words = [w for w in TYPOS if re.search(rf"\b{w}\b", text)]
    if not words:
        return text
    w = _pick(rng, words)
    return re.sub(rf"\b{w}\b", TYPOS[w], text, count=1)
