"""One-letter substitutions: phrases.yaml's `substitution_min_length` is the one threshold, both ways."""
from __future__ import annotations

import pytest

from radsim.data_contracts.vocabulary import default_vocabulary
from radsim.nlp.pipeline import build_patterns
from radsim.nlp.resources import phrases
from radsim.nlp.typos import SubstitutionCorrector

SHIPPED = phrases()["typos"]["substitution_min_length"]


def _with_threshold(value: int) -> dict:
    data = phrases()
    data["typos"]["substitution_min_length"] = value
    return data


def _corrector(value: int) -> SubstitutionCorrector:
    return SubstitutionCorrector.from_patterns(build_patterns(default_vocabulary(), _with_threshold(value)))


def test_the_shipped_threshold_corrects_long_words_only():
    assert SHIPPED == 8
    shipped = _corrector(SHIPPED)
    assert shipped.min_length == SHIPPED
    assert shipped.correct("Left effasion. Small pneumothorex.") == "Left effusion. Small pneumothorax."
    assert shipped.correct("A small nodale.") == "A small nodale."  # 6 letters: under the threshold


def test_lowering_the_threshold_matches_a_six_letter_substitution():
    six = _corrector(6)
    assert six.correct("A small Nodale.") == "A small Nodule."  # case and length kept
    assert six.correct("Left effasion.") == "Left effusion."  # longer words still corrected


def test_raising_the_threshold_stops_an_eight_letter_substitution():
    ten = _corrector(10)
    assert ten.correct("Left effasion.") == "Left effasion."
    assert ten.correct("Small pneumothorex.") == "Small pneumothorax."  # 12 letters: still corrected


def test_zero_means_never():
    never = _corrector(0)
    text = "Left effasion. Small pneumothorex. A small nodale."
    assert never.correct(text) == text


@pytest.mark.parametrize(("threshold", "expected"), [(6, 1), (SHIPPED, None)])
def test_the_labeler_reads_the_yaml_threshold(monkeypatch, threshold, expected):
    from radsim.nlp import pipeline
    from radsim.nlp.labeler import Labeler

    data = _with_threshold(threshold)
    monkeypatch.setattr(pipeline, "phrases", lambda: data)
    got = Labeler(default_vocabulary()).label("A small nodale in the right upper lobe.")
    assert got.values["lung_lesion"] == expected
