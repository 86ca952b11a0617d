"""The hand-written gold set (gold_set.yaml): every case must label exactly as written.

Strict: a finding the case does not list must come out null, so false positives fail too.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from radsim.data_contracts.vocabulary import NO_FINDING

GOLD = yaml.safe_load((Path(__file__).parent / "gold_set.yaml").read_text(encoding="utf-8"))
# Known failures, each with its reason; keep this list short (prefer fixing the labeler).
KNOWN_FAILURES: dict[str, str] = {}


def test_gold_set_is_large_and_covers_the_traps():
    assert len(GOLD) >= 200
    texts = " | ".join(c["t"].lower() for c in GOLD)
    for trap in ["no pneumothorax", "no evidence of effusion or consolidation", "cannot exclude pneumonia",
                 "pneumothorax has resolved", "previously seen nodule is no longer visible", "stable left effusion",
                 "subcutaneous emphysema", "pericardial effusion", "free air", "heart size is normal",
                 "lines and tubes in satisfactory position", "; ", " but ", "not excluded", "oedema",
                 "haemothorax", "indication:"]:
        assert trap in texts, trap


@pytest.mark.parametrize("case", GOLD, ids=[c["t"][:60] for c in GOLD])
def test_gold_case(labeler, case):
    if case["t"] in KNOWN_FAILURES:
        pytest.xfail(KNOWN_FAILURES[case["t"]])
    got = labeler.label(case["t"])
    expected = dict(case["e"])
    want_nf = expected.pop(NO_FINDING, None)
    observed = {k: v for k, v in got.values.items() if k != NO_FINDING and v is not None}
    assert observed == expected, "\n".join(f"{e.finding}: {e.status} by {e.rule} on {e.trigger!r}" for e in got.evidence)
    if want_nf is not None:
        assert got.values[NO_FINDING] == want_nf
