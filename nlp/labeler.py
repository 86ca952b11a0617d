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

from spacy.attrs import LOWER, SENT_START
from spacy.tokens import Doc, Span

from radsim.data_contracts.vocabulary import NO_FINDING, SUPPORT_DEVICES, Vocabulary, load_vocabulary

from .negex_trace import mentions, sentence_starts, trace
from .pipeline import ATTR_PREFIX, EXTENSIONS, SUGGESTIVE_PREFIX, Attribute, build_nlp
from .resources import historical, phrases
from .text import MAX_REPORT_CHARS, Decoded, decode_report, prepare
from .typos import SubstitutionCorrector
from .version import LABELER_VERSION

STATUS = {1: "positive", -1: "uncertain"}  # 0 is "negated" or "resolved"
RANK = {1: 3, -1: 2, 0: 1}  # aggregation: positive > uncertain > negative
# When two instances flag one mention at the same distance: resolved, then negated, then uncertain.
KIND_ORDER = ("resolved", "negation", "uncertainty")
# Hedges that an earlier negation governs: "no features to suggest infection" is negated.
GOVERNED_HEDGES = frozenset({"suggest", "suggests", "suggesting", "to suggest", "suggestive of", "suggestion of",
                             "suspicious for", "suspicious of", "concerning for", "worrisome for", "indicate"})
KIND_VALUE = {"resolved": (0, "resolved"), "negation": (0, "negated"), "uncertainty": (-1, "uncertain")}
_ARRAYS_KEY = ("radsim.labeler", "arrays")
HISTORICAL = historical()  # "history of", "follow-up": resolved-instance triggers reported as historical


class BadReport(ValueError):
    """A report that cannot be labelled; `reason` is its quarantine reason code."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class Evidence:
    finding: str
    status: str  # positive, negated, uncertain, resolved, historical
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
    """Sentence text for a mention, from the doc's sentence starts (Span.sent walks token by token)."""

    def __init__(self, doc: Doc, text: str | None):
        self.doc = doc
        self.text = text
        self.starts = sentence_starts(doc)

    def __call__(self, ent: Span) -> str:
        if self.text is None:
            self.text = self.doc.text  # Doc.text is rebuilt from the tokens on each access
        k = bisect_right(self.starts, ent.start)
        first = self.doc[self.starts[k - 1]]
        last = self.doc[(self.starts[k] if k < len(self.starts) else len(self.doc)) - 1]
        return self.text[first.idx:last.idx + len(last.text)].strip()


class Labeler:
    """A built pipeline for one vocabulary. Build once (about a second), label many."""

    def __init__(self, vocabulary: Vocabulary):
        self.vocabulary = vocabulary
        self.nlp, patterns = build_nlp(vocabulary)
        self.nlp.max_length = MAX_REPORT_CHARS + 1
        self.attributes = patterns.attributes
        self.corrector = SubstitutionCorrector(patterns.substitution_targets, patterns.known_words,
                                               patterns.substitution_min_length or 8)
        cfg = phrases()
        strings = self.nlp.vocab.strings
        self._negators = frozenset(strings.add(w) for w in cfg.get("attribute_negators", []))
        self._stops = frozenset(strings.add(w) for w in cfg.get("attribute_stops", []))
        # qualifier word (as a LOWER hash) -> (value, rule), per attribute; abnormal wins a clash, as before
        self._qualifiers = {attr: {strings.add(w): (v, rule) for v, rule, words in
                                   ((-1, "attribute.uncertain", attr.uncertain), (0, "attribute.normal", attr.normal),
                                    (1, "attribute.abnormal", attr.abnormal)) for w in words}
                            for attr in self.attributes}
        self._label_finding: dict[str, str] = {}
        self._window = int(cfg.get("attribute_window", 10))
        self.version = LABELER_VERSION

    # ------------------------------------------------------------------ public API

    def label(self, text: str | bytes) -> ReportLabels:
        """Label one report; raises BadReport for empty or undecodable text."""
        decoded = decode_report(text)
        if decoded.text is None:
            raise BadReport(decoded.reason or "undecodable_text", decoded.message)
        text = prepare(decoded.text)
        return self.labels_from_doc(self.nlp(self.corrector.correct(text)), text)

    def label_many(self, texts: Iterable[str | bytes | None], batch_size: int = 256) -> Iterator[ReportLabels | Decoded]:
        """Labels per text in order; a text that cannot be labelled yields its `Decoded` failure."""
        pending: deque[Decoded] = deque()

        def prepared() -> Iterator[tuple[str, str]]:
            for raw in texts:
                decoded = decode_report(raw)
                pending.append(decoded)
                text = prepare(decoded.text) if decoded.text is not None else ""
                yield self.corrector.correct(text), text

        for doc, text in self.nlp.pipe(prepared(), batch_size=batch_size, as_tuples=True):
            decoded = pending.popleft()
            yield self.labels_from_doc(doc, text) if decoded.text is not None else decoded

    # ------------------------------------------------------------------ doc → labels

    def _attribute_value(self, attr: Attribute, ent: Span) -> tuple[int, str, str] | None:
        """(value, qualifier, rule) from the qualifier nearest the attribute phrase, or None."""
        doc = ent.doc
        lower, sent_start = _word_arrays(doc)
        kinds = self._qualifiers[attr]
        limit = min(len(doc), ent.end + self._window)
        for i in range(ent.end, limit):
            if sent_start[i] == 1 or lower[i] in self._stops:
                break
            found = self._qualify(kinds, doc, lower, i)
            if found is not None:
                return found
        first = ent.start
        while first > 0 and sent_start[first] != 1 and ent.start - first < 4:
            first -= 1
        for i in range(ent.start - 1, first - 1, -1):
            found = self._qualify(kinds, doc, lower, i)
            if found is not None:
                return found
        return None

    def _qualify(self, kinds: dict[int, tuple[int, str]], doc: Doc, lower: list[int], i: int) -> tuple[int, str, str] | None:
        hit = kinds.get(lower[i])
        if hit is None:
            return None
        value, rule = hit
        if value == -1:
            return -1, doc[i].text, rule
        negator = next((j for j in range(i - 1, max(0, i - 2) - 1, -1) if lower[j] in self._negators), None)
        if negator is not None:
            return (0 if value == 1 else 1), f"{doc[negator].text} {doc[i].text}", rule + ".negated"
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
        finding = self._finding(label)
        if label.startswith(SUGGESTIVE_PREFIX):
            m = self._plain_mention(ent, traces, finding)
            if m.value == 1:  # "vascular congestion" suggests oedema without asserting it
                return _Mention(-1, "uncertain", ent, ent.text, "suggestive")
            return m
        return self._plain_mention(ent, traces, finding)

    def _plain_mention(self, ent: Span, traces: dict[str, dict], finding: str) -> _Mention:
        best: tuple[int, int, str, tuple] | None = None
        for order, kind in enumerate(KIND_ORDER):
            hit = traces[kind].get((ent.start, ent.end))
            if hit is not None and kind == "resolved" and not self._historical_applies(hit[0], finding):
                continue
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
        if kind == "resolved" and trigger.lower() in HISTORICAL.triggers:
            if _persists(ent):  # "follow-up of the effusion, which is slightly smaller"
                return _Mention(1, "positive", ent, ent.text, "historical.persists")
            return _Mention(0, "historical", ent, trigger, f"historical.{direction}")
        return _Mention(value, status, ent, trigger, f"{kind}.{direction}")

    @staticmethod
    def _historical_applies(trigger: str, finding: str) -> bool:
        """"Previous pneumonia" is past; "previous sternotomy" or "prior rib fracture" is still there."""
        return trigger.lower() not in HISTORICAL.short_reach or finding in HISTORICAL.short_reach_findings

    def _finding(self, label: str) -> str:
        found = self._label_finding.get(label)
        if found is None:
            if label.startswith(ATTR_PREFIX):
                found = self.attributes[int(label[len(ATTR_PREFIX):])].finding
            else:
                found = label.removeprefix(SUGGESTIVE_PREFIX)
            self._label_finding[label] = found
        return found

    def labels_from_doc(self, doc: Doc, text: str | None = None) -> ReportLabels:
        """Labels from a processed Doc; `text` (the Doc's text, when the caller has it) saves rebuilding it."""
        traces = {kind: trace(doc, ext) for kind, ext in EXTENSIONS.items()}
        chosen: dict[str, _Mention] = {}
        for ent in mentions(doc):
            m = self._mention(doc, ent, traces)
            if m is None:
                continue
            finding = self._finding(ent.label_)
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


def _word_arrays(doc: Doc) -> tuple[list[int], list[int]]:
    """(LOWER hashes, SENT_START flags) of every token, read once per doc without making Token objects."""
    cached = doc.user_data.get(_ARRAYS_KEY)
    if cached is None:
        arr = doc.to_array([LOWER, SENT_START])
        cached = doc.user_data[_ARRAYS_KEY] = (arr[:, 0].tolist(), arr[:, 1].astype("int64").tolist())
    return cached


def _persists(ent: Span) -> bool:
    """Does the mention's own clause, after it, say it is still there ("..., which is unchanged")?

    Stops at the next mention; a persistence word right before another mention modifies that one
    ("history of CHF with stable cardiomegaly").
    """
    doc = ent.doc
    end = ent.sent.end
    for i in range(ent.end, end):
        tok = doc[i]
        if tok.ent_iob_ == "B":
            return False
        if tok.lower_ in HISTORICAL.persistence:
            ahead = doc[i + 1:min(end, i + 3)]
            if not any(t.ent_iob_ == "B" for t in ahead):
                return True
    return False


def build_labeler(vocabulary: Vocabulary | str | None = None, *, replace: bool = False) -> Labeler:
    """A Labeler for a Vocabulary, a vocabulary YAML path (extending the default), or the default."""
    if vocabulary is None or not isinstance(vocabulary, Vocabulary):
        vocabulary = load_vocabulary(vocabulary, replace=replace)
    return Labeler(vocabulary)
