"""A device named only by its position: "XXXX tip terminates at the cavoatrial junction" (issue 22, class 3).

De-identification often replaces a device's name with a placeholder, but its position still says it
is a line or a tube. A trigger word (tip, terminates, ends, coiled) that is not already part of a
mention, followed within a few tokens of its sentence by a vascular, airway or enteric landmark (SVC,
cavoatrial, carina, stomach...; "diaphragm" only after below/beneath/under), becomes a support-device
mention, so negation and resolution apply to it as to any other ("the tip ... has been removed").
"""
from __future__ import annotations

from spacy.language import Language
from spacy.tokens import Doc, Span

from .arrays import record_entities, word_arrays


class DevicePosition:
    def __init__(self, nlp: Language, label: str, triggers: list[str], landmarks: list[str], below: list[str],
                 diaphragm: list[str], window: int):
        strings = nlp.vocab.strings

        def ids(words: list[str]) -> frozenset[int]:  # LOWER hashes, compared with the doc's array
            return frozenset(strings.add(w.lower()) for w in words)

        self.label = label
        self.triggers = ids(triggers)
        self.landmarks = [tuple(strings.add(w) for w in p.lower().split()) for p in landmarks]
        self.first_words = {p[0] for p in self.landmarks}
        self.below = ids(below)
        self.diaphragm = ids(diaphragm)
        self.window = window

    def __call__(self, doc: Doc) -> Doc:
        lower, sent = word_arrays(doc)
        found = [i for i, w in enumerate(lower) if w in self.triggers]
        new = [Span(doc, i, i + 1, label=self.label) for i in found
               if doc[i].ent_iob_ not in ("B", "I") and self._landmark_after(lower, sent, i)]
        if new:
            doc.set_ents(new, default="unmodified")
            record_entities(doc, new)
        return doc

    def _landmark_after(self, lower: list[int], sent: list[int], i: int) -> bool:
        for j in range(i + 1, min(len(lower), i + 1 + self.window)):
            if sent[j] == 1:
                return False
            w = lower[j]
            if w in self.diaphragm and self.below.intersection(lower[max(i + 1, j - 3):j]):
                return True
            if w in self.first_words and any(tuple(lower[j:j + len(p)]) == p for p in self.landmarks):
                return True
        return False


@Language.factory("radsim_device_position", default_config={"label": "support_devices", "triggers": [],
                                                            "landmarks": [], "below": [], "diaphragm": [],
                                                            "window": 8})
def make_device_position(nlp: Language, name: str, label: str, triggers: list[str], landmarks: list[str],
                         below: list[str], diaphragm: list[str], window: int) -> DevicePosition:
    return DevicePosition(nlp, label, triggers, landmarks, below, diaphragm, window)
