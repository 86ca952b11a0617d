"""Report text → CheXpert-style values per finding, with evidence (DESIGN §6).

Values: 1 present, 0 negated or resolved, -1 uncertain, None not mentioned. Per report a
positive mention beats an uncertain one, which beats a negative one. `no_finding` is 1 when no
finding other than support_devices is 1 or -1, else 0, and never None.
"""
from __future__ import annotations

from bisect import bisect_right
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from spacy.attrs import IDX, LENGTH
from spacy.tokens import Doc, Span

from radsim.data_contracts.vocabulary import NO_FINDING, SUPPORT_DEVICES, Vocabulary, load_vocabulary

from .arrays import release_spans
from .certainty import DEFAULT_THRESHOLD, check_threshold
from .certainty import RANK as CERTAINTY_RANK
from .config import PIPE_BATCH
from .mentions import Mention, MentionRules
from .negex_trace import mentions, sentence_starts, trace
from .pipeline import ATTR_PREFIX, EXTENSIONS, SUGGESTIVE_PREFIX, build_nlp
from .resources import certainty_lexicon, phrases, unlikely_triggers
from .scope import ScopeRules
from .text import MAX_REPORT_CHARS, Decoded, decode_report, prepare
from .typos import SubstitutionCorrector
from .version import LABELER_VERSION

STATUS = {1: "positive", -1: "uncertain"}  # 0 is "negated" or "resolved"
RANK = {1: 3, -1: 2, 0: 1}  # aggregation: positive > uncertain > negative


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
    certainty: str | None = None  # the mention's grade on the certainty scale (radsim.nlp.certainty)

    def as_dict(self) -> dict[str, str | None]:
        return {"finding": self.finding, "status": self.status, "sentence": self.sentence,
                "trigger": self.trigger, "rule": self.rule, "certainty": self.certainty}


@dataclass
class ReportLabels:
    """One report's labels: a value (or None) per vocabulary name, and why.

    A text that cannot be labelled (empty, undecodable, too long) has every value None and says why
    in `problem` (its quarantine reason) and `message`.
    """

    values: dict[str, int | None]
    evidence: list[Evidence] = field(default_factory=list)
    problem: str | None = None
    message: str = ""

    @property
    def positive_findings(self) -> list[str]:
        return [name for name, v in self.values.items() if v == 1]

    def evidence_for(self, finding: str) -> Evidence | None:
        return next((e for e in self.evidence if e.finding == finding), None)

    def as_row(self, exam_id: str, labeler_version: str = LABELER_VERSION) -> dict[str, Any]:
        """A row of the labels contract."""
        return {"exam_id": exam_id, **self.values, "positive_findings": self.positive_findings,
                "evidence": [e.as_dict() for e in self.evidence], "labeler_version": labeler_version}


class _Sentences:
    """Sentence text for a mention, from the doc's sentence starts (Span.sent walks token by token)."""

    def __init__(self, doc: Doc, text: str | None):
        self.doc = doc
        self.text = text
        self.starts = sentence_starts(doc)
        arr = doc.to_array([IDX, LENGTH])
        self.idx, self.length = arr[:, 0].tolist(), arr[:, 1].tolist()

    def __call__(self, ent: Span) -> str:
        if self.text is None:
            self.text = self.doc.text  # Doc.text is rebuilt from the tokens on each access
        k = bisect_right(self.starts, ent.start)
        first = self.starts[k - 1]
        last = (self.starts[k] if k < len(self.starts) else len(self.doc)) - 1
        return self.text[self.idx[first]:self.idx[last] + self.length[last]].strip()


class Labeler:
    """A built pipeline for one vocabulary. Build once (about a second), label many.

    `present` is the least certain grade that still counts as present (LabelConfig.certainty_threshold).
    """

    def __init__(self, vocabulary: Vocabulary, certainty_threshold: str = DEFAULT_THRESHOLD):
        self.vocabulary = vocabulary
        self.certainty_threshold = check_threshold(certainty_threshold)
        self.nlp, patterns = build_nlp(vocabulary)
        self.nlp.max_length = MAX_REPORT_CHARS + 1
        self.attributes = patterns.attributes
        self.corrector = SubstitutionCorrector.from_patterns(patterns)
        cfg = phrases()
        strings = self.nlp.vocab.strings
        # qualifier word (as a LOWER hash) -> (value, rule), per attribute; abnormal wins a clash, as before
        qualifiers = {attr: {strings.add(w): (v, rule) for v, rule, words in
                             ((-1, "attribute.uncertain", attr.uncertain), (0, "attribute.normal", attr.normal),
                              (1, "attribute.abnormal", attr.abnormal)) for w in words}
                      for attr in self.attributes}
        self.rules = MentionRules(self.attributes, qualifiers,
                                  frozenset(strings.add(w) for w in cfg.get("attribute_negators", [])),
                                  frozenset(strings.add(w) for w in cfg.get("attribute_stops", [])),
                                  int(cfg.get("attribute_window", 10)), certainty_lexicon(), unlikely_triggers(),
                                  self.certainty_threshold)
        owners = {p["pattern"]: p["label"] for p in patterns.ruler if p["pattern"] in patterns.implications}
        self.scope = ScopeRules(cfg, patterns.implications, owners)
        self._label_finding: dict[int, tuple[str, bool]] = {}
        self.version = LABELER_VERSION

    # ------------------------------------------------------------------ public API

    def label(self, text: str | bytes) -> ReportLabels:
        """Label one report; raises BadReport for empty or undecodable text."""
        decoded = decode_report(text)
        if decoded.text is None:
            raise BadReport(decoded.reason or "undecodable_text", decoded.message)
        text = prepare(decoded.text)
        return self.labels_from_doc(self.nlp(self.corrector.correct(text)), text)

    def label_many(
        self, texts: Iterable[str | bytes | None], batch_size: int = PIPE_BATCH
    ) -> Iterator[ReportLabels | Decoded]:
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

    def label_texts(self, texts: Iterable[str | bytes | None], batch_size: int = PIPE_BATCH) -> list[ReportLabels]:
        """One ReportLabels per text, in order; a text that cannot be labelled has all values None and a `problem`."""
        empty = dict.fromkeys(self.vocabulary.names)
        return [r if isinstance(r, ReportLabels) else
                ReportLabels(dict(empty), [], r.reason or "undecodable_text", r.message)
                for r in self.label_many(texts, batch_size)]

    # ------------------------------------------------------------------ doc → labels

    def _finding(self, ent: Span) -> tuple[str, bool]:
        """(finding, plain): the finding a mention's label names; plain when it is neither an attribute
        phrase nor a suggestive one. Cached by label hash."""
        found = self._label_finding.get(ent.label)
        if found is None:
            label = ent.label_
            if label.startswith(ATTR_PREFIX):
                found = (self.attributes[int(label[len(ATTR_PREFIX):])].finding, False)
            else:
                found = (label.removeprefix(SUGGESTIVE_PREFIX), not label.startswith(SUGGESTIVE_PREFIX))
            self._label_finding[ent.label] = found
        return found

    def _chosen(self, doc: Doc) -> dict[str, Mention]:
        """The strongest mention per finding: present > uncertain > negated, then the more certain."""
        traces = {kind: trace(doc, ext) for kind, ext in EXTENSIONS.items()}
        flagged = traces["negation"].keys() | traces["uncertainty"].keys() | traces["resolved"].keys()
        scope = self.scope
        chosen: dict[str, tuple[int, Mention]] = {}
        for ent in mentions(doc):
            finding, plain = self._finding(ent)
            if plain and (ent.start, ent.end) not in flagged:  # no trigger reaches it: present, as stated
                m: Mention | None = Mention(1, "positive", ent, None, "mention", "definite")
            else:
                m = self.rules.mention(ent, traces, finding)
            if m is not None and finding in scope.findings:
                m = scope.explained(m, finding)
            if m is None:
                continue
            score = RANK[m.value] * 10 - CERTAINTY_RANK[m.certainty]
            old = chosen.get(finding)
            if old is None or score > old[0]:
                chosen[finding] = (score, m)
            if finding in scope.implying:
                for other in scope.implied(ent, finding):
                    old = chosen.get(other)
                    if old is None or score > old[0]:
                        chosen[other] = (score, m)
        return {name: m for name, (_, m) in chosen.items()}

    def labels_from_doc(self, doc: Doc, text: str | None = None) -> ReportLabels:
        """Labels from a processed Doc; `text` (the Doc's text, when the caller has it) saves rebuilding it."""
        chosen = self._chosen(doc)
        release_spans(doc)
        values: dict[str, int | None] = {}
        evidence: list[Evidence] = []
        sentence = _Sentences(doc, text) if chosen else None
        abnormal: Mention | None = None
        abnormal_name = ""
        for name in self.vocabulary.names:
            if name == NO_FINDING:
                values[name] = None  # set below, keeps column order
                continue
            m = chosen.get(name)
            values[name] = m.value if m else None
            if m is not None:
                evidence.append(Evidence(name, m.status, sentence(m.ent), m.trigger_text, m.rule, m.certainty))
                if name != SUPPORT_DEVICES and m.value in (1, -1) and abnormal is None:
                    abnormal, abnormal_name = m, name
        if NO_FINDING in values:
            if abnormal is None:
                values[NO_FINDING] = 1
                evidence.insert(0, Evidence(NO_FINDING, "positive", None, None,
                                            "no_finding: no finding other than support_devices is 1 or -1"))
            else:
                values[NO_FINDING] = 0
                evidence.insert(0, Evidence(NO_FINDING, "negated", sentence(abnormal.ent), abnormal.trigger_text,
                                            f"no_finding: {abnormal_name} is {abnormal.value}"))
        return ReportLabels(values, evidence)


def build_labeler(vocabulary: Vocabulary | str | None = None, *, replace: bool = False,
                  certainty_threshold: str = DEFAULT_THRESHOLD) -> Labeler:
    """A Labeler for a Vocabulary, a vocabulary YAML path (extending the default), or the default."""
    if vocabulary is None or not isinstance(vocabulary, Vocabulary):
        vocabulary = load_vocabulary(vocabulary, replace=replace)
    return Labeler(vocabulary, certainty_threshold=certainty_threshold)
