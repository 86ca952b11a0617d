"""Report text → CheXpert-style values per finding, with evidence (DESIGN §6).

Values: 1 present, 0 negated or resolved, -1 uncertain, None not mentioned. Per report a
positive mention beats an uncertain one, which beats a negative one. `no_finding` is 1 when no
finding other than support_devices is 1 or -1, else 0, and never None.
"""
from __future__ import annotations

from bisect import bisect_right
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from spacy.tokens import Doc, Span

from radsim.data_contracts.vocabulary import NO_FINDING, SUPPORT_DEVICES, Vocabulary, load_vocabulary

from .negex_trace import IGNORE_LABEL, trace
from .pipeline import ATTR_PREFIX, EXTENSIONS, Attribute, build_nlp
from .resources import phrases
from .text import Decoded, decode_report, prepare
from .version import LABELER_VERSION

STATUS = {1: "positive", -1: "uncertain"}  # 0 is "negated" or "resolved"
RANK = {1: 3, -1: 2, 0: 1}  # aggregation: positive > uncertain > negative
# When two instances flag one mention at the same distance: resolved, then negated, then uncertain.
KIND_ORDER = ("resolved", "negation", "uncertainty")
# Hedges that an earlier negation governs: "no features to suggest infection" is negated.
GOVERNED_HEDGES = frozenset({"suggest", "suggests", "suggesting", "to suggest", "suggestive of", "suggestion of",
                             "suspicious for", "suspicious of", "concerning for", "worrisome for", "indicate"})
KIND_VALUE = {"resolved": (0, "resolved"), "negation": (0, "negated"), "uncertainty": (-1, "uncertain")}


class BadReport(ValueError):
    """A report that cannot be labelled; `reason` is its quarantine reason code."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class Evidence:
    finding: str
    status: str  # positive, negated, uncertain, resolved
    sentence: str | None
    trigger: str | None
    rule: str

    def as_dict(self) -> dict[str, str | None]:
        return {"finding": self.finding, "status": self.status, "sentence": self.sentence,
                "trigger": self.trigger, "rule": self.rule}


@dataclass
class ReportLabels:
    """One report's labels: a value (or None) per vocabulary name, and why."""

    values: dict[str, int | None]
    evidence: list[Evidence] = field(default_factory=list)

    @property
    def positive_findings(self) -> list[str]:
        return [name for name, v in self.values.items() if v == 1]

    def evidence_for(self, finding: str) -> Evidence | None:
        return next((e for e in self.evidence if e.finding == finding), None)

    def as_row(self, exam_id: str, labeler_version: str = LABELER_VERSION) -> dict[str, Any]:
        """A row of the labels contract."""
        return {"exam_id": exam_id, **self.values, "positive_findings": self.positive_findings,
                "evidence": [e.as_dict() for e in self.evidence], "labeler_version": labeler_version}


@dataclass
class _Mention:
    value: int
    status: str
    ent: Span
    trigger: str
    rule: str


class _Sentences:
    """Sentence text for a mention, from one pass over the doc (Span.sent walks token by token)."""

    def __init__(self, doc: Doc, text: str | None):
        self.doc = doc
        self.text = text
        self.starts: list[int] | None = None

    def __call__(self, ent: Span) -> str:
        if self.starts is None:
            if self.text is None:
                self.text = self.doc.text  # Doc.text is rebuilt from the tokens on each access
            sents = list(self.doc.sents)
            self.starts = [s.start for s in sents]
            self.spans = sents
        s = self.spans[bisect_right(self.starts, ent.start) - 1]
        return self.text[s.start_char:s.end_char].strip()  # Span.text builds a Token per word


class Labeler:
    """A built pipeline for one vocabulary. Build once (about a second), label many."""

    def __init__(self, vocabulary: Vocabulary):
        self.vocabulary = vocabulary
        self.nlp, self.attributes = build_nlp(vocabulary)
        cfg = phrases()
        self._negators = frozenset(cfg.get("attribute_negators", []))
        self._stops = frozenset(cfg.get("attribute_stops", []))
        self._window = int(cfg.get("attribute_window", 10))
        self.version = LABELER_VERSION

    # ------------------------------------------------------------------ public API

    def label(self, text: str | bytes) -> ReportLabels:
        """Label one report; raises BadReport for empty or undecodable text."""
        decoded = decode_report(text)
        if decoded.text is None:
            raise BadReport(decoded.reason or "undecodable_text", decoded.message)
        text = prepare(decoded.text)
        return self.labels_from_doc(self.nlp(text), text)

    def label_many(self, texts: Iterable[str | bytes | None], batch_size: int = 256) -> Iterator[ReportLabels | Decoded]:
        """Labels per text in order; a text that cannot be labelled yields its `Decoded` failure."""
        pending: deque[Decoded] = deque()

        def prepared() -> Iterator[tuple[str, str]]:
            for raw in texts:
                decoded = decode_report(raw)
                pending.append(decoded)
                text = prepare(decoded.text) if decoded.text is not None else ""
                yield text, text

        for doc, text in self.nlp.pipe(prepared(), batch_size=batch_size, as_tuples=True):
            decoded = pending.popleft()
            yield self.labels_from_doc(doc, text) if decoded.text is not None else decoded

    # ------------------------------------------------------------------ doc → labels

    def _attribute_value(self, attr: Attribute, ent: Span) -> tuple[int, str, str] | None:
        """(value, qualifier, rule) from the qualifier nearest the attribute phrase, or None."""
        doc = ent.doc
        limit = min(len(doc), ent.end + self._window)
        for i in range(ent.end, limit):
            tok = doc[i]
            if tok.is_sent_start or tok.lower_ in self._stops:
                break
            found = self._qualify(attr, doc, i)
            if found is not None:
                return found
        sent_start = ent.start
        while sent_start > 0 and not doc[sent_start].is_sent_start and ent.start - sent_start < 4:
            sent_start -= 1
        for i in range(ent.start - 1, sent_start - 1, -1):
            found = self._qualify(attr, doc, i)
            if found is not None:
                return found
        return None

    def _qualify(self, attr: Attribute, doc: Doc, i: int) -> tuple[int, str, str] | None:
        word = doc[i].lower_
        if word in attr.abnormal:
            value, rule = 1, "attribute.abnormal"
        elif word in attr.normal:
            value, rule = 0, "attribute.normal"
        elif word in attr.uncertain:
            return -1, doc[i].text, "attribute.uncertain"
        else:
            return None
        lo = max(0, i - 2)
        negated = next((doc[j] for j in range(i - 1, lo - 1, -1) if doc[j].lower_ in self._negators), None)
        if negated is not None:
            return (0 if value == 1 else 1), f"{negated.text} {doc[i].text}", rule + ".negated"
        return value, doc[i].text, rule

    def _mention(self, doc: Doc, ent: Span, traces: dict[str, dict]) -> _Mention | None:
        label = ent.label_
        if label.startswith(ATTR_PREFIX):
            attr = self.attributes[int(label[len(ATTR_PREFIX):])]
            found = self._attribute_value(attr, ent)
            if found is None:
                return None
            value, qualifier, rule = found
            hedge = traces["uncertainty"].get((ent.start, ent.end))
            if value == 1 and hedge is not None:
                return _Mention(-1, "uncertain", ent, f"{hedge[0]} … {qualifier}", "attribute.abnormal+uncertainty")
            return _Mention(value, STATUS.get(value, "negated"), ent, qualifier, rule)
        best: tuple[int, int, str, tuple] | None = None
        for order, kind in enumerate(KIND_ORDER):
            hit = traces[kind].get((ent.start, ent.end))
            if hit is not None and (best is None or (hit[1], order) < (best[0], best[1])):
                best = (hit[1], order, kind, hit)
        if best is None:
            return _Mention(1, "positive", ent, ent.text, "mention")
        if best[2] == "uncertainty" and best[3][0].lower() in GOVERNED_HEDGES:
            neg = traces["negation"].get((ent.start, ent.end))
            if neg is not None and neg[2] == "preceding" and neg[1] > best[0]:
                best = (neg[1], 1, "negation", neg)  # "no airspace disease to suggest pneumonia"
        _, _, kind, (trigger, _dist, direction) = best
        value, status = KIND_VALUE[kind]
        return _Mention(value, status, ent, trigger, f"{kind}.{direction}")

    def labels_from_doc(self, doc: Doc, text: str | None = None) -> ReportLabels:
        """Labels from a processed Doc; `text` (the Doc's text, when the caller has it) saves rebuilding it."""
        traces = {kind: trace(doc, ext) for kind, ext in EXTENSIONS.items()}
        chosen: dict[str, _Mention] = {}
        for ent in doc.ents:
            if ent.label_ == IGNORE_LABEL:
                continue
            m = self._mention(doc, ent, traces)
            if m is None:
                continue
            finding = self.attributes[int(ent.label_[len(ATTR_PREFIX):])].finding if ent.label_.startswith(ATTR_PREFIX) else ent.label_
            old = chosen.get(finding)
            if old is None or RANK[m.value] > RANK[old.value]:
                chosen[finding] = m
        values: dict[str, int | None] = {}
        evidence: list[Evidence] = []
        sentence = _Sentences(doc, text) if chosen else None
        abnormal: _Mention | None = None
        abnormal_name = ""
        for name in self.vocabulary.names:
            if name == NO_FINDING:
                values[name] = None  # set below, keeps column order
                continue
            m = chosen.get(name)
            values[name] = m.value if m else None
            if m is not None:
                evidence.append(Evidence(name, m.status, sentence(m.ent), m.trigger, m.rule))
                if name != SUPPORT_DEVICES and m.value in (1, -1) and abnormal is None:
                    abnormal, abnormal_name = m, name
        if NO_FINDING in values:
            if abnormal is None:
                values[NO_FINDING] = 1
                evidence.insert(0, Evidence(NO_FINDING, "positive", None, None,
                                            "no_finding: no finding other than support_devices is 1 or -1"))
            else:
                values[NO_FINDING] = 0
                evidence.insert(0, Evidence(NO_FINDING, "negated", sentence(abnormal.ent), abnormal.trigger,
                                            f"no_finding: {abnormal_name} is {abnormal.value}"))
        return ReportLabels(values, evidence)


def build_labeler(vocabulary: Vocabulary | str | None = None, *, replace: bool = False) -> Labeler:
    """A Labeler for a Vocabulary, a vocabulary YAML path (extending the default), or the default."""
    if vocabulary is None or not isinstance(vocabulary, Vocabulary):
        vocabulary = load_vocabulary(vocabulary, replace=replace)
    return Labeler(vocabulary)
