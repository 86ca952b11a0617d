"""Per-doc token arrays read once and shared by the pipeline's components and the labeler.

Iterating a Doc makes a Token object per token, which costs more than the rules that read them; the
LOWER hashes and sentence-start flags come out of one `to_array` call instead, cached on the doc.
"""
from __future__ import annotations

from spacy.attrs import IS_PUNCT, LOWER, ORTH
from spacy.tokens import Doc
from spacy.vocab import Vocab

_KEY = ("radsim.labeler", "arrays")
# Sentence ends. "\n" is one: report lines are often findings without a full stop ("No pneumothorax\nSmall
# left effusion"); ".." and an ellipsis too. "?" is not: it is a hedge in reports ("? consolidation").
SENTENCE_PUNCT = (".", "!", "\n", "..", "...", "....", "…")
_PUNCT_IDS: dict[int, frozenset[int]] = {}


def _punct_ids(vocab: Vocab) -> frozenset[int]:
    ids = _PUNCT_IDS.get(id(vocab))
    if ids is None:
        ids = _PUNCT_IDS[id(vocab)] = frozenset(vocab.strings.add(p) for p in SENTENCE_PUNCT)
    return ids


def word_arrays(doc: Doc) -> tuple[list[int], list[int]]:
    """(LOWER hashes, sentence-start flags: 1 starts a sentence, else 0) of every token, read once per doc.

    Sentences follow spaCy's rule-based sentencizer: after a token in SENTENCE_PUNCT, the next token that
    is neither punctuation nor one of them starts a sentence. Computed here from the token arrays, with
    no Token object made (the stock component makes one per token, which costs more than the rule).
    """
    cached = doc.user_data.get(_KEY)
    if cached is None:
        arr = doc.to_array([LOWER, ORTH, IS_PUNCT])
        lower, orth, is_punct = arr[:, 0].tolist(), arr[:, 1].tolist(), arr[:, 2].tolist()
        punct = _punct_ids(doc.vocab)
        starts = [0] * len(lower)
        if starts:
            starts[0] = 1
        seen_end = False
        for i, o in enumerate(orth):
            if o in punct:
                seen_end = True
            elif seen_end and not is_punct[i]:
                starts[i] = 1
                seen_end = False
        cached = doc.user_data[_KEY] = (lower, starts)
    return cached


ENTS_KEY = ("radsim.labeler", "all_ents")
MENTIONS_KEY = ("radsim.labeler", "mentions")  # the entities other than ignore phrases (negex_trace.mentions)


def all_entities(doc: Doc) -> list:
    """Every entity span of the doc, ignore phrases included, in order.

    The entity ruler and the device-position rule record the spans they set, so Doc.ents (which builds a
    new Span for every entity on each access, about 80 µs a report) is read at most once.
    """
    cached = doc.user_data.get(ENTS_KEY)
    if cached is None:
        cached = doc.user_data[ENTS_KEY] = list(doc.ents)
    return cached


def record_entities(doc: Doc, spans: list) -> None:
    """Note the spans just set on the doc (merged with those recorded before, in order)."""
    old = doc.user_data.get(ENTS_KEY)
    doc.user_data[ENTS_KEY] = sorted([*old, *spans], key=lambda s: s.start) if old else list(spans)


def release_spans(doc: Doc) -> None:
    """Drop the cached spans once a doc is labelled: a Span refers to its Doc, so spans kept in the Doc's
    user_data make a reference cycle that only the garbage collector frees, and a batch of such docs
    makes each collection slow. The evidence sentences are taken before this."""
    doc.user_data.pop(ENTS_KEY, None)
    doc.user_data.pop(MENTIONS_KEY, None)
