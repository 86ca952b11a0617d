"""Triggers that attribute a finding to another study: "Prior CT demonstrated collapse", "the effusion seen
on yesterday's film", "present on the CT of 12 March" (issue 22, class 7).

Phrase lists cannot say "prior, up to three words, a study, up to four words, a verb of showing", and
spaCy's token Matcher would walk every token of every report for them. Here the scan starts only at
the few tokens that name a study, on the doc's LOWER array, and looks a few tokens either way:

- preceding: PRIOR … STUDY … VERB ("previous CT from March showed"), or MODALITY … VERB ("CT of the
  chest last month demonstrated");
- following: [SEEN] ON [the] … PRIOR … STUDY ("seen on the prior CT", "on the previous radiograph"),
  or SEEN ON [the] … MODALITY ("noted on CT").

No gap crosses a comma, a semicolon or a sentence end. The words come from termsets.yaml
(`historical.study_reference`).
"""
from __future__ import annotations

from typing import Any

from spacy.tokens import Doc

from .arrays import word_arrays

_STOPS = (",", ";", ".", ":", "!", "?", "\n")


class StudyReferences:
    def __init__(self, vocab: Any, words: dict[str, list[str]], preceding_id: int, following_id: int):
        def ids(key: str) -> frozenset[int]:
            return frozenset(vocab.strings.add(str(w).lower()) for w in words.get(key) or [])

        self.prior, self.studies, self.modalities = ids("prior"), ids("studies"), ids("modalities")
        self.verbs, self.seen, self.at = ids("verbs"), ids("seen"), ids("at_words")
        self.stops = frozenset(vocab.strings.add(s) for s in _STOPS)
        self.det = frozenset(vocab.strings.add(s) for s in ("the", "a", "an"))
        self.anchors = self.studies | self.modalities
        self.preceding_id, self.following_id = preceding_id, following_id

    def __call__(self, doc: Doc) -> list[tuple[int, int, int]]:
        """(match id, start, end) of every study reference, as phrase-matcher matches."""
        lower, sent = word_arrays(doc)
        hits = [i for i, w in enumerate(lower) if w in self.anchors]
        if not hits:
            return []
        out: list[tuple[int, int, int]] = []
        for i in hits:
            out += self._preceding(lower, sent, i) + self._following(lower, sent, i)
        return out

    def _reach(
        self, lower: list[int], sent: list[int], i: int, step: int, n: int, wanted: frozenset[int]
    ) -> int | None:
        """The nearest token in `wanted` at most n + 1 tokens from i (step ±1), not across a clause or sentence."""
        j = i
        for _ in range(n + 1):
            if step < 0 and sent[j] == 1:
                return None  # j starts its sentence: nothing before it belongs to the clause
            j += step
            if not 0 <= j < len(lower) or lower[j] in self.stops or (step > 0 and sent[j] == 1):
                return None
            if lower[j] in wanted:
                return j
        return None

    def _preceding(self, lower: list[int], sent: list[int], i: int) -> list[tuple[int, int, int]]:
        verb = self._reach(lower, sent, i, 1, 5 if lower[i] in self.modalities else 4, self.verbs)
        if verb is None:
            return []
        prior = self._reach(lower, sent, i, -1, 3, self.prior)
        if prior is not None:
            return [(self.preceding_id, prior, verb + 1)]
        return [(self.preceding_id, i, verb + 1)] if lower[i] in self.modalities else []

    def _following(self, lower: list[int], sent: list[int], i: int) -> list[tuple[int, int, int]]:
        prior = self._reach(lower, sent, i, -1, 2, self.prior)
        at = self._reach(lower, sent, prior if prior is not None else i, -1, 3, self.at)
        if at is None or (prior is None and lower[i] not in self.modalities):
            return []
        seen = at - 1 if at > 0 and lower[at - 1] in self.seen else None
        if seen is None and prior is None:
            return []  # "on CT" alone is no attribution; "seen on CT" is
        return [(self.following_id, seen if seen is not None else at, i + 1)]
