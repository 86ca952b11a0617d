"""spaCy's EntityRuler with a linear annotation step, for phrase patterns on a doc with no entities yet.

The stock `set_annotations` re-filters its entity list on every match and walks each match's tokens,
and `match` wraps every call in a warnings context: together about 100 µs per report, more than
tokenising. Here the phrase matcher's matches are taken longest first (then leftmost, as the stock
ruler sorts them) and laid down greedily on a byte mask: the same entities, in a few µs. Token
patterns are not supported (radsim uses none) and say so loudly; the ruler runs first, on a doc without
entities (an entity set before it would be overwritten).
"""
from __future__ import annotations

from spacy.language import Language
from spacy.pipeline import EntityRuler
from spacy.tokens import Doc, Span

from .arrays import record_entities


class PhraseEntityRuler(EntityRuler):
    def match(self, doc: Doc) -> list[tuple[int, int, int]]:
        if self.token_patterns:
            raise ValueError("radsim_entity_ruler takes phrase patterns only")
        found = {m for m in self.phrase_matcher(doc) if m[1] != m[2]}
        return sorted(found, key=lambda m: (m[2] - m[1], -m[1]), reverse=True)

    def set_annotations(self, doc: Doc, matches: list[tuple[int, int, int]]) -> None:
        taken = bytearray(len(doc))
        spans = []
        for match_id, start, end in matches:
            if taken[start] or taken[end - 1]:  # longest first: a later match cannot contain an earlier one
                continue
            taken[start:end] = b"\x01" * (end - start)
            spans.append(Span(doc, start, end, label=match_id))
        spans.sort(key=lambda s: s.start)
        doc.set_ents(spans)
        record_entities(doc, spans)


@Language.factory("radsim_entity_ruler", default_config={"phrase_matcher_attr": "LOWER", "validate": False})
def make_phrase_entity_ruler(nlp: Language, name: str, phrase_matcher_attr: str, validate: bool) -> PhraseEntityRuler:
    return PhraseEntityRuler(nlp, name, phrase_matcher_attr=phrase_matcher_attr, validate=validate)
