"""The graded certainty scale (Panicek & Hricak, AJR 2016): grades per phrase, the threshold, the evidence."""
from __future__ import annotations

import pytest

from radsim.nlp.certainty import GRADES, THRESHOLD_CHOICES, counts_as_present
from radsim.nlp.labeler import build_labeler
from radsim.nlp.resources import certainty_lexicon


@pytest.mark.parametrize("trigger, grade", [
    ("consistent with", "consistent"), ("compatible with", "consistent"), ("in keeping with", "consistent"),
    ("diagnostic of", "consistent"), ("suspicious for", "probable"), ("probable", "probable"), ("likely", "probable"),
    ("favours", "probable"), ("possible", "possible"), ("may represent", "possible"), ("?", "possible"),
    ("less likely", "less_likely"), ("cannot be excluded", "less_likely"), ("unlikely", "unlikely"),
    ("may be consistent with", "possible"), ("likely consistent with", "probable"), ("is questioned", "possible"),
])
def test_the_lexicon_grades_a_trigger_by_its_least_certain_phrase(trigger, grade):
    assert certainty_lexicon().grade(trigger) == grade


def test_grades_are_ordered_and_the_threshold_counts_at_or_above_it():
    assert GRADES[:4] == THRESHOLD_CHOICES == ("definite", "consistent", "probable", "possible")
    assert counts_as_present("consistent", "consistent") and not counts_as_present("probable", "consistent")
    assert counts_as_present("probable", "possible") and not counts_as_present("less_likely", "possible")


# one sentence per grade; the finding's value at each threshold
SENTENCES = {
    "definite": ("Small left pleural effusion.", "pleural_effusion"),
    "consistent": ("Right basal opacity consistent with pneumonia.", "pneumonia"),
    "probable": ("Probable left lower lobe atelectasis.", "atelectasis"),
    "possible": ("Possible right pneumothorax.", "pneumothorax"),
    "less_likely": ("A rib fracture is felt less likely.", "fracture"),
    "unlikely": ("Pulmonary oedema is unlikely.", "edema"),
    "absent": ("No consolidation.", "consolidation"),
}


@pytest.mark.parametrize("present", THRESHOLD_CHOICES)
def test_each_grade_is_recorded_and_counts_as_present_only_from_the_threshold(present):
    labeler = build_labeler(certainty_threshold=present)
    for grade, (text, finding) in SENTENCES.items():
        labels = labeler.label(text)
        ev = labels.evidence_for(finding)
        assert ev is not None and ev.certainty == grade, (text, ev)
        if grade in ("unlikely", "absent"):
            want = 0
        else:
            want = 1 if counts_as_present(grade, present) else -1
        assert labels.values[finding] == want, (present, text)


def test_suggestive_phrases_and_borderline_stay_uncertain_whatever_the_threshold():
    lenient = build_labeler(certainty_threshold="possible")
    assert lenient.label("Pulmonary vascular congestion.").values["edema"] == -1
    assert lenient.label("Borderline heart size.").values["cardiomegaly"] == -1
    assert lenient.label("Possible small effusion.").values["pleural_effusion"] == 1
