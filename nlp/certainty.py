"""A graded certainty scale for hedged mentions, after Panicek & Hricak (AJR 2016;207:2-3).

Their lexicon ties each phrase to a probability: "consistent with" > 90%, "suspicious for" and
"probable" ~75%, "possible" ~50%, "less likely" ~25%, "unlikely" < 10%. radsim grades every mention:

    definite     the finding is stated plainly ("Small left effusion.")
    consistent   > 90%   consistent with, compatible with, in keeping with, diagnostic of
    probable     ~ 75%   probable, likely, suspicious for, concerning for, suggestive of, favours
    possible     ~ 50%   possible, may, could, maybe, questionable, ?, versus, differential
    less_likely  ~ 25%   less likely, cannot be excluded, not ruled out
    unlikely     < 10%   unlikely, not likely (value 0)
    absent         0%    negated, resolved or historical (value 0)

A mention counts as present (1) when its grade is at or above the site's `certainty_threshold`
(LabelConfig; default "consistent", which reproduces the CheXpert labeler's published conventions:
"consistent with" and "compatible with" positive; probable, suspicious, possible and "cannot exclude"
uncertain). Between that and "less likely" it is uncertain (-1). The phrases and their grades live
in termsets.yaml (`certainty`); a trigger holding several graded words takes the least certain one
("likely consistent with" is probable, "may be compatible with" possible). Nothing here imports spaCy.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Literal

from .version import LABELER_VERSION

GRADES = ("definite", "consistent", "probable", "possible", "less_likely", "unlikely", "absent")
PERCENT = {"definite": "stated", "consistent": "> 90%", "probable": "~ 75%", "possible": "~ 50%",
           "less_likely": "~ 25%", "unlikely": "< 10%", "absent": "0%"}
CertaintyThreshold = Literal["definite", "consistent", "probable", "possible"]
THRESHOLD_CHOICES: tuple[str, ...] = CertaintyThreshold.__args__  # type: ignore[attr-defined]
DEFAULT_THRESHOLD = "consistent"
RANK = {g: i for i, g in enumerate(GRADES)}  # lower is more certain
HEDGE_DEFAULT = "possible"  # an uncertainty trigger the lexicon does not grade


def label_metadata(threshold: str, version: str = LABELER_VERSION) -> dict[str, str]:
    """What a labels table records about how it was labelled."""
    return {"radsim.labeler_version": version, "radsim.labeler.certainty_threshold": threshold}


def check_threshold(threshold: str) -> str:
    if threshold not in THRESHOLD_CHOICES:
        raise ValueError(f"certainty_threshold must be one of {', '.join(THRESHOLD_CHOICES)}, got {threshold!r}")
    return threshold


class Lexicon:
    """Trigger phrase → certainty grade, from termsets.yaml's `certainty` section."""

    def __init__(self, graded: dict[str, list[str]]):
        unknown = set(graded) - set(GRADES)
        if unknown:
            raise ValueError(f"termsets.yaml certainty: unknown grade(s) {sorted(unknown)}")
        self.phrases = [(tuple(str(p).lower().split()), grade) for grade, phrases in graded.items() for p in phrases]
        self._grade = lru_cache(maxsize=4096)(self._compute)

    def grade(self, trigger: str, default: str = HEDGE_DEFAULT) -> str:
        """The least certain grade among the lexicon phrases the trigger holds (whole words), else `default`."""
        return self._grade(trigger.lower(), default)

    def _compute(self, trigger: str, default: str) -> str:
        words = tuple(trigger.split())
        found = [grade for phrase, grade in self.phrases if _contains(words, phrase)]
        return max(found, key=RANK.__getitem__) if found else default


def _contains(words: tuple[str, ...], phrase: tuple[str, ...]) -> bool:
    n = len(phrase)
    return any(words[i:i + n] == phrase for i in range(len(words) - n + 1))


def counts_as_present(grade: str, threshold: str) -> bool:
    return RANK[grade] <= RANK[threshold]
