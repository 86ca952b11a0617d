"""Report text vs report_truth, noise rates, and the prevalence table."""
from __future__ import annotations

import re

import numpy as np
import pytest

from radsim.data_contracts import NO_FINDING, SUPPORT_DEVICES, default_vocabulary
from radsim.synthetic import FINDINGS, IMPLICIT_PHRASES, expected_prevalence, plan_cohort, sample_findings
from radsim.synthetic.reports import TYPOS

NON_ASSERTING = ("INDICATION", "HISTORY", "CLINICAL DETAILS", "TECHNIQUE", "COMPARISON")
HEADER = re.compile(
    r"^(INDICATION|HISTORY|CLINICAL DETAILS|TECHNIQUE|COMPARISON|FINDINGS|IMPRESSION|CONCLUSION|OPINION)\s*:",
    re.I | re.M,
)
HEDGE = re.compile(r"\b(possible|cannot exclude|cannot be excluded|may represent|questionable)\b", re.I)
NEGATED = re.compile(r"\b(no|has resolved|no longer|interval resolution)\b", re.I)


def _phrases() -> list[tuple[str, str]]:
    out = [(s.lower(), f.name) for f in default_vocabulary().findings for s in f.synonyms]
    out += [(p, f) for p, (f, _) in IMPLICIT_PHRASES.items()]
    return sorted(out, key=lambda t: -len(t[0]))


PHRASES = _phrases()
PATTERNS = [(re.compile(rf"(?<![\w-]){re.escape(p)}(?![\w-])"), name) for p, name in PHRASES]


def asserting_text(text: str) -> str:
    """Drop sections that do not assert (DESIGN §6); a report without headers asserts throughout."""
    parts = HEADER.split(text)
    if len(parts) == 1:
        return text
    keep = []
    for i in range(1, len(parts), 2):
        if parts[i].upper() not in NON_ASSERTING:
            keep.append(parts[i + 1])
    return "\n".join(keep)


def mentions(clause: str) -> set[str]:
    """Longest-match phrase lookup, as an entity ruler would do it."""
    low, found = clause.lower(), set()
    for pat, name in PATTERNS:
        if pat.search(low):
            found.add(name)
            low = pat.sub(" # ", low)
    return found


def read_report(text: str) -> dict[str, int]:
    """A tiny rule reader that must agree exactly with report_truth for every template."""
    values: dict[str, int] = {}
    rank = {1: 3, -1: 2, 0: 1}
    for sentence in re.split(r"(?<=\.)\s+|\n+", asserting_text(text)):
        for clause in re.split(r"\bbut\b", sentence):
            clause = clause.strip()
            if not clause:
                continue
            status = (
                -1
                if HEDGE.search(clause)
                else 0
                if (
                    NEGATED.search(clause)
                    or "heart size is normal" in clause.lower()
                    or "normal heart size" in clause.lower()
                )
                else 1
            )
            for f in mentions(clause):
                if f not in values or rank[status] > rank[values[f]]:
                    values[f] = status
    return values


@pytest.fixture(scope="module")
def noisy():
    return plan_cohort(exams=1500, seed=7, omission_rate=0.1, overcall_rate=0.1)


def test_report_truth_is_exactly_what_the_text_says(noisy):
    for s in noisy:
        expected = {f: v for f, v in s.report.values.items() if v is not None and f != NO_FINDING}
        assert read_report(s.report.text) == expected, s.report.text


def test_no_finding_rule_and_indication_mentions(noisy):
    indication_only = 0
    for s in noisy:
        v = s.report.values
        assert v[NO_FINDING] == int(not any(v[f] in (1, -1) for f in FINDINGS if f != SUPPORT_DEVICES))
        assert v[NO_FINDING] in (0, 1)
        named = mentions(s.report.text) - mentions(asserting_text(s.report.text))
        indication_only += sum(v[f] is None for f in named)
    assert indication_only >= 20  # "INDICATION: ?pneumothorax" and friends are present and do not count


def test_report_variety(noisy):
    texts = [s.report.text for s in noisy]
    no_headers = np.mean([not HEADER.search(t) for t in texts])
    assert 0.2 <= no_headers <= 0.4
    values = [v for s in noisy for f, v in s.report.values.items() if f != NO_FINDING]
    for status in (1, 0, -1):
        assert values.count(status) > 50
    joined = "\n".join(texts)
    for needle in (
        "has resolved",
        "Stable",
        "oedema",
        "PTX",
        "Cannot exclude",
        "No evidence of",
        "Heart size is normal",
    ):
        assert needle in joined, needle
    assert sum(any(re.search(rf"\b{re.escape(t)}\b", x) for t in TYPOS.values()) for x in texts) > 100


def test_typos_never_touch_a_vocabulary_phrase_or_cue():
    words = {w for phrase, _ in PHRASES for w in re.findall(r"[a-z]+", phrase)}
    cues = {
        "no",
        "not",
        "possible",
        "cannot",
        "exclude",
        "excluded",
        "resolved",
        "longer",
        "stable",
        "unchanged",
        "persistent",
        "may",
        "represent",
        "questionable",
        "evidence",
        "normal",
        "but",
        "resolution",
        "seen",
        "visible",
    }
    for w in TYPOS:
        assert w.lower() not in words | cues, w


def test_noise_rates_make_report_disagree_with_image():
    clean = plan_cohort(exams=400, seed=2)
    for s in clean:  # every finding in the image is reported (present, stable or hedged); none is invented
        for f in FINDINGS:
            v = s.report.values[f]
            assert (v in (1, -1)) if f in s.findings else (v != 1)
    omitted = plan_cohort(exams=200, seed=2, omission_rate=1.0)
    assert all(s.report.values[f] is None for s in omitted for f in s.findings)
    over = plan_cohort(exams=200, seed=2, overcall_rate=1.0)
    assert all(sum(s.report.values[f] == 1 and f not in s.findings for f in FINDINGS) == 1 for s in over)
    # noise changes the text, never what the images show
    again = plan_cohort(exams=200, seed=2)
    assert [s.findings for s in over] == [s.findings for s in omitted] == [s.findings for s in again]


def test_prevalence_within_tolerance_of_the_table():
    expected = expected_prevalence()
    present, is_ap, _ = sample_findings(np.random.default_rng(0), 40_000)
    for i, f in enumerate(FINDINGS):
        assert abs(present[:, i].mean() - expected[f]) < 0.01, f
        assert expected[f] >= 0.03, f  # every finding is common enough to learn
    normal = ~present[:, [i for i, f in enumerate(FINDINGS) if f != SUPPORT_DEVICES]].any(1)
    assert abs(normal.mean() - expected[NO_FINDING]) < 0.01 and abs(expected[NO_FINDING] - 0.35) < 1e-9
    dev = present[:, FINDINGS.index(SUPPORT_DEVICES)]
    assert dev[is_ap].mean() > 2 * dev[~is_ap].mean()  # devices go with AP films


def test_every_finding_appears_and_patients_repeat():
    specs = plan_cohort(exams=400, seed=0)
    assert all(any(f in s.findings for s in specs) for f in FINDINGS)
    assert len({s.patient_id for s in specs}) < 0.85 * len(specs)
    assert len({s.exam_id for s in specs}) == len(specs)
