"""The spaCy pipeline: blank English, sentencizer, entity ruler, three negex instances (DESIGN §6).

Sections and markup are handled on the raw string before spaCy (radsim.nlp.text), so each report
is one Doc made by `nlp.pipe`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import spacy
from spacy.language import Language

from radsim.data_contracts.vocabulary import Vocabulary

from . import negex_trace  # noqa: F401 - registers the "radsim_negex" factory
from .negex_trace import IGNORE_LABEL
from .resources import KINDS, phrases, termsets

ATTR_PREFIX = "attr:"
# Span extension per kind; "negex" is negspacy's own name for the negation flag.
EXTENSIONS = {"negation": "negex", "uncertainty": "uncertain", "resolved": "resolved"}
SENTENCE_PUNCT = [".", "!", "\n"]  # "?" is a hedge in reports ("? consolidation"), not a sentence end
# Following triggers that reach only the mention right before them ("atelectasis versus consolidation").
ADJACENT_FOLLOWING = {"uncertainty": ["versus", "vs", "vs.", "and/or", "?"]}


@dataclass(frozen=True)
class Attribute:
    finding: str
    normal: frozenset[str]
    abnormal: frozenset[str]
    uncertain: frozenset[str]


# --------------------------------------------------------------------------- phrase variants

_WORD = re.compile(r"^[a-z]+$")


def _plural(phrase: str) -> str | None:
    head, _, last = phrase.rpartition(" ")
    if not _WORD.match(last) or len(last) < 4:
        return None
    if last.endswith(("s", "x", "ae", "ia", "ed", "ic", "al", "ous", "ing", "ly")):
        return None
    if last.endswith("y") and last[-2] not in "aeiou":
        last = last[:-1] + "ies"
    elif last.endswith(("sh", "ch")):
        last += "es"
    else:
        last += "s"
    return f"{head} {last}".strip()


def phrase_variants(phrase: str, spelling: list[tuple[str, str]]) -> list[str]:
    """A phrase in lower case with its UK/US spellings, plural and hyphen/space forms."""
    base = " ".join(phrase.split())
    if base.isupper():  # abbreviations: "PTX", "CHF"; matched case-insensitively, not inflected
        return [base.lower()]
    out = {base.lower()}
    for a, b in spelling:
        for p in list(out):
            if a in p:
                out.add(p.replace(a, b))
            if b in p:
                out.add(p.replace(b, a))
    for p in list(out):
        plural = _plural(p)
        if plural:
            out.add(plural)
        if p.count(" ") == 1:
            out.add(p.replace(" ", "-"))
        if "-" in p:
            out.add(p.replace("-", " "))
            out.add(p.replace("-", ""))
    return sorted(out)


def typo_variants(word: str, substitutions: bool) -> set[str]:
    """One-edit misspellings of a single word: deletion, transposition, doubled letter, substitution."""
    out: set[str] = set()
    n = len(word)
    for i in range(n):
        out.add(word[:i] + word[i + 1:])
        out.add(word[:i] + word[i] + word[i:])
        if i < n - 1 and word[i] != word[i + 1]:
            out.add(word[:i] + word[i + 1] + word[i] + word[i + 2:])
        if substitutions and 0 < i < n - 1:
            for c in "abcdefghijklmnopqrstuvwxyz":
                if c != word[i]:
                    out.add(word[:i] + c + word[i + 1:])
    out.discard(word)
    return out


def build_patterns(vocabulary: Vocabulary, data: dict[str, Any] | None = None) -> tuple[list[dict], list[Attribute]]:
    """Entity-ruler phrase patterns: findings, attribute phrases (label attr:N) and ignore phrases."""
    data = data if data is not None else phrases()
    spelling = [tuple(p) for p in data.get("spelling", [])]
    owner: dict[str, str] = {}  # phrase -> label; the first owner of a phrase keeps it

    def add(label: str, phrase: str) -> None:
        for v in phrase_variants(phrase, spelling):
            owner.setdefault(v, label)

    for f in vocabulary.findings:  # a site's own synonyms win over our ignore list
        if f.derived:
            continue
        add(f.name, f.name.replace("_", " "))
        for syn in f.synonyms:
            add(f.name, syn)
    for text in data.get("ignore", []):
        add(IGNORE_LABEL, text)
    attributes: list[Attribute] = []
    for i, attr in enumerate(data.get("attributes", [])):
        if attr["finding"] not in vocabulary.observed:
            continue
        attributes.append(Attribute(attr["finding"], *(frozenset(str(w).lower() for w in attr.get(k, []))
                                                      for k in ("normal", "abnormal", "uncertain"))))
        for text in attr["phrases"]:
            add(f"{ATTR_PREFIX}{len(attributes) - 1}", text)
    typos = data.get("typos") or {}
    min_len = int(typos.get("min_length", 0) or 0)
    if min_len:
        sub_len = int(typos.get("substitution_min_length") or 10**6)
        never = {str(w).lower() for w in typos.get("never", [])}
        taken = set(owner) | never
        singles = [(p, label) for p, label in list(owner.items())
                   if _WORD.match(p) and len(p) >= min_len and label != IGNORE_LABEL and not label.startswith(ATTR_PREFIX)]
        for word, label in singles:
            for typo in typo_variants(word, substitutions=len(word) >= sub_len):
                if typo not in taken:
                    owner.setdefault(typo, label)
    patterns = [{"label": label, "pattern": phrase} for phrase, label in owner.items()]
    return patterns, attributes


def build_nlp(vocabulary: Vocabulary) -> tuple[Language, list[Attribute]]:
    """The pipeline for one vocabulary, and the attribute table its `attr:N` labels index."""
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer", config={"punct_chars": SENTENCE_PUNCT})
    ruler = nlp.add_pipe("entity_ruler", config={"phrase_matcher_attr": "LOWER", "validate": False})
    patterns, attributes = build_patterns(vocabulary)
    ruler.add_patterns(patterns)
    sets = termsets()
    for kind in KINDS:
        nlp.add_pipe(
            "radsim_negex",
            name=kind,
            config={
                "neg_termset": sets[kind],
                "extension_name": EXTENSIONS[kind],
                "adjacent_following": ADJACENT_FOLLOWING.get(kind, []),
            },
        )
    return nlp, attributes

