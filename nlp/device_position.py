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


class DevicePosition:
    def __init__(self, nlp: Language, label: str, triggers: list[str], landmarks: list[str], below: list[str],
                 diaphragm: list[str], window: int):
        self.label = label
        self.triggers = {w.lower() for w in triggers}
        self.landmarks = [tuple(p.lower().split()) for p in landmarks]
        self.first_words = {p[0] for p in self.landmarks}
        self.below = {w.lower() for w in below}
        self.diaphragm = {w.lower() for w in diaphragm}
        self.window = window

    def __call__(self, doc: Doc) -> Doc:
        words = [t.lower_ for t in doc]
        if not self.triggers.intersection(words):
            return doc
        new = []
        for i, word in enumerate(words):
            if word in self.triggers and doc[i].ent_iob_ not in ("B", "I") and self._landmark_after(doc, words, i):
                new.append(Span(doc, i, i + 1, label=self.label))
        if new:
            doc.set_ents(new, default="unmodified")
        return doc

    def _landmark_after(self, doc: Doc, words: list[str], i: int) -> bool:
        for j in range(i + 1, min(len(doc), i + 1 + self.window)):
            if doc[j].is_sent_start:
                return False
            w = words[j]
            if w in self.diaphragm and self.below.intersection(words[max(i + 1, j - 3):j]):
                return True
            if w in self.first_words and any(tuple(words[j:j + len(p)]) == p for p in self.landmarks):
                return True
        return False


@Language.factory("radsim_device_position", default_config={"label": "support_devices", "triggers": [],
                                                            "landmarks": [], "below": [], "diaphragm": [],
                                                            "window": 8})
def make_device_position(nlp: Language, name: str, label: str, triggers: list[str], landmarks: list[str],
                         below: list[str], diaphragm: list[str], window: int) -> DevicePosition:
    return DevicePosition(nlp, label, triggers, landmarks, below, diaphragm, window)
