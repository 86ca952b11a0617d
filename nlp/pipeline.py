"""The spaCy pipeline: blank English, entity ruler, device positions, three negex instances (DESIGN §6).

Sentences are read from token arrays (radsim.nlp.arrays.word_arrays) with the rule of spaCy's
sentencizer, not set on the Doc: `doc.sents` is not available, `negex_trace.sentence_starts` is.

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

from . import device_position, negex_trace, ruler  # noqa: F401 - register the radsim_* factories
from .arrays import SENTENCE_PUNCT  # noqa: F401 - sentences come from token arrays (radsim.nlp.arrays)
from .negex_trace import IGNORE_LABEL
from .resources import KINDS, expand_slots, historical, historical_following, phrases, study_reference_words, termsets

ATTR_PREFIX = "attr:"
SUGGESTIVE_PREFIX = "sug:"  # a phrase that suggests a finding without asserting it: at most -1
# Span extension per kind; "negex" is negspacy's own name for the negation flag.
EXTENSIONS = {"negation": "negex", "uncertainty": "uncertain", "resolved": "resolved"}
# Slash abbreviations kept as one token, so "f/u." and "h/o" match their triggers.
SLASH_ABBREVIATIONS = ("f/u", "h/o", "s/p", "r/o", "w/o", "c/w", "n/g", "hx/o")
# Following triggers that reach only the mention right before them ("atelectasis versus consolidation",
# "pneumonia follow-up").
# Preceding triggers that reach only a mention a few tokens on ("Negative acute cardiopulmonary abnormality"
# but not "... negative and sputum shows pneumonia"); the resolved instance's come from termsets.yaml.
SHORT_REACH = {"negation": ["negative"]}
SHORT_REACH_GAP = {"negation": 5}
# "?" is a hedge in reports ("? consolidation"), not a sentence end (radsim.nlp.arrays)
ADJACENT_FOLLOWING = {"uncertainty": ["versus", "vs", "vs.", "and/or", "?"], "resolved": historical_following()}


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


def typo_variants(word: str) -> set[str]:
    """One-edit misspellings of a single word: deletion, transposition, doubled letter.

    Substitutions are looked up instead (radsim.nlp.typos), as 25 patterns per letter cost too much.
    """
    out: set[str] = set()
    n = len(word)
    for i in range(n):
        out.add(word[:i] + word[i + 1:])
        out.add(word[:i] + word[i] + word[i:])
        if i < n - 1 and word[i] != word[i + 1]:
            out.add(word[:i] + word[i + 1] + word[i] + word[i + 2:])
    out.discard(word)
    return out


def typo_targets(owner: dict[str, str], min_len: int) -> list[tuple[str, str]]:
    """Single-word finding phrases long enough to carry one-letter typos: (word, label)."""
    return [(p, label) for p, label in owner.items()
            if _WORD.match(p) and len(p) >= min_len and label != IGNORE_LABEL and not label.startswith(ATTR_PREFIX)]


@dataclass(frozen=True)
class Patterns:
    """What the entity ruler matches, the attribute table its `attr:N` labels index, and typo data."""

    ruler: list[dict]
    attributes: list[Attribute]
    substitution_targets: list[str]  # single finding words that also match one-letter substitutions
    known_words: frozenset[str]  # words never "corrected": every phrase word, trigger word and `never`
    substitution_min_length: int  # phrases.yaml typos.substitution_min_length: the one declaration (0: never)
    implications: dict[str, tuple[str, ...]]  # phrase -> the other findings it asserts ("hydropneumothorax")


def build_patterns(vocabulary: Vocabulary, data: dict[str, Any] | None = None) -> Patterns:
    """Entity-ruler phrase patterns: findings, suggestive phrases (sug:NAME), attributes (attr:N), ignores."""
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
        for syn in f.suggestive:
            add(f"{SUGGESTIVE_PREFIX}{f.name}", syn)
    for template in data.get("templates", []):  # before the plain ignore list: a template is more specific
        if template["label"] in vocabulary.observed or template["label"] == IGNORE_LABEL:
            for text in expand_slots(template["slots"]):
                add(template["label"], text)
    for text in [*data.get("ignore", []), *(data.get("explained_away") or {}).get("explainers", [])]:
        add(IGNORE_LABEL, text)
    implications = {v: tuple(f for f in found if f in vocabulary.observed)
                    for phrase, found in (data.get("implies") or {}).items() for v in phrase_variants(phrase, spelling)}
    attributes: list[Attribute] = []
    for attr in data.get("attributes", []):
        if attr["finding"] not in vocabulary.observed:
            continue
        attributes.append(Attribute(attr["finding"], *(frozenset(str(w).lower() for w in attr.get(k, []))
                                                      for k in ("normal", "abnormal", "uncertain"))))
        for text in attr["phrases"]:
            add(f"{ATTR_PREFIX}{len(attributes) - 1}", text)
    typos = data.get("typos") or {}
    min_len = int(typos.get("min_length", 0) or 0)
    sub_len = int(typos.get("substitution_min_length") or 0)
    never = {str(w).lower() for w in typos.get("never", [])}
    phrase_words = {w for p in owner for w in re.findall(r"[a-z]+", p)}
    targets = [w for w, _ in typo_targets(owner, sub_len)] if sub_len else []
    if min_len:
        taken = set(owner) | never
        for word, label in typo_targets(owner, min_len):
            for typo in typo_variants(word):
                if typo not in taken:
                    owner.setdefault(typo, label)
    trigger_words = {w for ts in termsets().values() for terms in ts.values() for t in terms
                     for w in re.findall(r"[a-z]+", t.lower())}
    return Patterns(
        ruler=[{"label": label, "pattern": phrase} for phrase, label in owner.items()],
        attributes=attributes,
        substitution_targets=targets,
        known_words=frozenset(phrase_words | trigger_words | never),
        substitution_min_length=sub_len,
        implications={k: v for k, v in implications.items() if v},
    )


def build_nlp(vocabulary: Vocabulary) -> tuple[Language, Patterns]:
    """The pipeline for one vocabulary, and the patterns it was built from."""
    nlp = spacy.blank("en")
    for abbr in SLASH_ABBREVIATIONS:
        for form in {abbr, abbr.upper(), abbr.capitalize()}:
            nlp.tokenizer.add_special_case(form, [{"ORTH": form}])
    entity_ruler = nlp.add_pipe("radsim_entity_ruler", config={"phrase_matcher_attr": "LOWER", "validate": False})
    patterns = build_patterns(vocabulary)
    entity_ruler.add_patterns(patterns.ruler)
    position = phrases().get("device_position") or {}
    if position.get("label") in vocabulary.observed:
        nlp.add_pipe(
            "radsim_device_position",
            config={k: position[k] for k in ("label", "triggers", "landmarks", "below", "diaphragm", "window")},
        )
    sets = termsets()
    hist = historical()
    study_refs = study_reference_words()
    for kind in KINDS:
        nlp.add_pipe(
            "radsim_negex",
            name=kind,
            config={
                "neg_termset": sets[kind],
                "extension_name": EXTENSIONS[kind],
                "adjacent_following": ADJACENT_FOLLOWING.get(kind, []),
                "short_preceding": SHORT_REACH.get(kind, sorted(hist.short_reach) if kind == "resolved" else []),
                "short_preceding_gap": SHORT_REACH_GAP.get(kind, hist.short_reach_gap),
                "study_reference": study_refs if kind == "resolved" else {},
            },
        )
    _empty_tokenizer_cache(nlp)
    return nlp, patterns


def _empty_tokenizer_cache(nlp: Language) -> None:
    """Start labelling with an empty tokenizer cache.

    spaCy caches at most `max_cache_size` (10,000) tokenised chunks. Tokenising ~25,000 pattern phrases
    fills it with pattern words, and report words are then never cached: tokenising runs three times
    slower. Re-setting the special-case rules (the public way to flush it) keeps them and empties it.
    """
    nlp.tokenizer.rules = dict(nlp.tokenizer.rules)
