"""One-letter substitutions of long finding words ("pneumothorex"), corrected before spaCy runs.

Deletions, doubled letters and transpositions are entity-ruler patterns (pipeline.typo_variants).
Substitutions are not: 25 variants per letter would cost ~100 MB of patterns per process. Instead,
each word of at least `min_length` letters that is not a known word is looked up under a wildcard
key per inner position ("pneumoth?rax"), SymSpell-style. A substitution keeps the text's length,
so character offsets (and the evidence quoted from the original text) stay exact.

`min_length` is declared once, as `typos.substitution_min_length` in phrases.yaml (0: never); it
reaches the corrector through `Patterns.substitution_min_length` (`from_patterns`).
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .pipeline import Patterns

_CACHE_LIMIT = 200_000


class SubstitutionCorrector:
    """Maps an unknown long word one substitution away from exactly one target word to that word."""

    def __init__(self, targets: Iterable[str], known: Iterable[str], min_length: int):
        self.min_length = min_length
        # the words looked up: runs of at least `min_length` letters (none when 0, "never")
        self._long_word = re.compile(rf"[A-Za-z]{{{min_length},}}") if min_length > 0 else None
        self.known = {w.lower() for w in known}
        index: dict[str, str | None] = {}
        for word in {t.lower() for t in targets if len(t) >= min_length and t.isalpha()}:
            for key in _keys(word):
                index[key] = word if index.get(key, word) == word else None  # ambiguous keys map to None
        self.index = {k: v for k, v in index.items() if v is not None}
        self._cache: dict[str, str | None] = {}

    @classmethod
    def from_patterns(cls, patterns: Patterns) -> SubstitutionCorrector:
        """The corrector of a built pattern set: its targets, known words and phrases.yaml's threshold."""
        return cls(patterns.substitution_targets, patterns.known_words, patterns.substitution_min_length)

    def target(self, word: str) -> str | None:
        """The vocabulary word `word` misspells by one substitution, or None."""
        low = word.lower()
        if low in self._cache:
            return self._cache[low]
        found: str | None = None
        if len(low) >= self.min_length and low not in self.known:
            hits = {self.index[k] for k in _keys(low) if k in self.index}
            found = hits.pop() if len(hits) == 1 else None
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[low] = found
        return found

    def correct(self, text: str) -> str:
        """`text` with each misspelt long finding word replaced, keeping case and length."""
        if self._long_word is None:
            return text
        out: list[str] | None = None
        for m in self._long_word.finditer(text):
            word = m.group()
            target = self.target(word)
            if target is None:
                continue
            if out is None:
                out = list(text)
            for i, (a, b) in enumerate(zip(word, target)):
                if a.lower() != b:
                    out[m.start() + i] = b.upper() if a.isupper() else b
        return text if out is None else "".join(out)


def _keys(word: str) -> list[str]:
    # inner positions only, as for the other typo kinds: first and last letters are rarely wrong
    return [f"{word[:i]}?{word[i + 1:]}" for i in range(1, len(word) - 1)]
