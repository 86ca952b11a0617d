"""One mention → its value, status, certainty grade, trigger and rule (DESIGN §6).

The three negex instances (negation, uncertainty, resolved) each record the trigger nearest a
mention; the nearest of them wins. An uncertainty trigger is graded on the certainty scale
(radsim.nlp.certainty) and counts as present at or above the site's threshold. The resolved
instance also carries the historical triggers ("history of") and the hypothetical ones ("may be
occult on radiographs", "CT could further evaluate for"), told apart by trigger: a historical
mention is 0, a hypothetical one is no mention at all.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spacy.tokens import Doc, Span

from .arrays import word_arrays
from .certainty import RANK as CERTAINTY_RANK
from .certainty import Lexicon, counts_as_present
from .negex_trace import sentence_bounds
from .pipeline import ATTR_PREFIX, SUGGESTIVE_PREFIX, Attribute
from .resources import historical, hypothetical

# When two instances flag one mention at the same distance: resolved, then negated, then uncertain.
KIND_ORDER = ("resolved", "negation", "uncertainty")
# Hedges that an earlier negation governs: "no features to suggest infection" is negated.
GOVERNED_HEDGES = frozenset({"suggest", "suggests", "suggesting", "to suggest", "suggestive of", "suggestion of",
                             "suspicious for", "suspicious of", "concerning for", "worrisome for", "indicate",
                             "consistent with", "compatible with", "in keeping with", "diagnostic of",
                             "characteristic of", "typical of", "favour", "favor", "favours", "favors",
                             "to indicate", "indicating", "representing", "to represent"})
HISTORICAL = historical()  # "history of", "follow-up": resolved-instance triggers reported as historical
HYPOTHETICAL = hypothetical()  # "may be occult", "could further evaluate for": resolved-instance triggers, no mention
NEGATED_BY = frozenset({"not", "no", "longer", "never", "nor"})  # "no longer present" does not persist
# "heart and mediastinum are normal": one qualifier for a list of attribute phrases
SHARED_PREDICATE_GLUE = frozenset({"and", ",", "or", "/", "&", "the"})
# a qualifier after one of these opens another noun phrase ("by a large effusion", "due to large bullae")
NOUN_PHRASE_OPENERS = frozenset({"a", "an", "the", "by", "of", "with", "from", "to", "behind", "over"})


@dataclass(slots=True)
class Mention:
    value: int
    status: str
    ent: Span
    trigger: str | None  # None: the mention itself (its text is read only if it becomes evidence)
    rule: str
    certainty: str = "definite"

    @property
    def trigger_text(self) -> str:
        return self.trigger if self.trigger is not None else self.ent.text


class MentionRules:
    """How a mention's value is read from the traces, the attribute qualifiers and the certainty lexicon."""

    def __init__(self, attributes: list[Attribute], qualifiers: dict, negators: frozenset[int], stops: frozenset[int],
                 window: int, lexicon: Lexicon, unlikely: frozenset[str], threshold: str):
        self.attributes = attributes
        self._qualifiers = qualifiers
        self._negators = negators
        self._stops = stops
        self._window = window
        self.lexicon = lexicon
        self.unlikely = unlikely
        self.threshold = threshold

    # ------------------------------------------------------------------ attribute phrases ("heart size is normal")

    def attribute_value(self, attr: Attribute, ent: Span) -> tuple[int, str, str] | None:
        """(value, qualifier, rule) from the qualifier nearest the attribute phrase, or None.

        A qualifier right before another mention belongs to it ("obscured by a large hiatus hernia"), and
        the search after the phrase stops at another mention.
        """
        doc = ent.doc
        lower, sent_start = word_arrays(doc)
        kinds = self._qualifiers[attr]
        limit = min(len(doc), ent.end + self._window)
        last_end = ent.end
        for i in range(ent.end, limit):
            if sent_start[i] == 1 or lower[i] in self._stops:
                break
            iob = doc[i].ent_iob_
            if iob == "B" and not all(t.lower_ in SHARED_PREDICATE_GLUE for t in doc[last_end:i]):
                break  # a qualifier after another mention is that mention's ("heart size, large effusion")
            if iob in ("B", "I"):
                last_end = i + 1
                continue
            found = self._qualify(kinds, doc, lower, i)
            if found is not None:
                if _before_mention(doc, i, limit):
                    break
                return found
        first = ent.start
        while first > 0 and sent_start[first] != 1 and ent.start - first < 4:
            first -= 1
        for i in range(ent.start - 1, first - 1, -1):
            if doc[i].ent_iob_ != "O" and doc[i].ent_iob_ != "":
                break
            found = self._qualify(kinds, doc, lower, i)
            if found is not None:
                return found
        return None

    def _qualify(
        self, kinds: dict[int, tuple[int, str]], doc: Doc, lower: list[int], i: int
    ) -> tuple[int, str, str] | None:
        hit = kinds.get(lower[i])
        if hit is None:
            return None
        value, rule = hit
        if value == -1:
            return -1, doc[i].text, rule
        if value == 1 and _normal_follows(doc, i, kinds):  # "low normal", "low-normal": a normal value
            return 0, f"{doc[i].text} normal", "attribute.normal"
        negator = next((j for j in range(i - 1, max(0, i - 2) - 1, -1) if lower[j] in self._negators), None)
        if negator is not None:
            return (0 if value == 1 else 1), f"{doc[negator].text} {doc[i].text}", rule + ".negated"
        return value, doc[i].text, rule

    # ------------------------------------------------------------------ one mention

    def mention(self, ent: Span, traces: dict[str, dict], finding: str) -> Mention | None:
        label = ent.label_
        if label.startswith(ATTR_PREFIX):
            return self._attribute_mention(ent, traces)
        m = self.plain_mention(ent, traces, finding)
        if m is not None and label.startswith(SUGGESTIVE_PREFIX) and m.value == 1:
            # "vascular congestion" suggests oedema without asserting it, whatever the threshold
            return Mention(-1, "uncertain", ent, None, "suggestive", "possible")
        return m

    def _attribute_mention(self, ent: Span, traces: dict[str, dict]) -> Mention | None:
        attr = self.attributes[int(ent.label_[len(ATTR_PREFIX):])]
        found = self.attribute_value(attr, ent)
        if found is None:
            return None
        value, qualifier, rule = found
        hedge = traces["uncertainty"].get((ent.start, ent.end))
        if value == 1 and hedge is not None:
            grade = self._grade(ent.doc, hedge[0], hedge[3])
            if counts_as_present(grade, self.threshold):
                return Mention(1, "positive", ent, f"{hedge[0]} … {qualifier}", "attribute.abnormal+certainty", grade)
            return Mention(-1, "uncertain", ent, f"{hedge[0]} … {qualifier}", "attribute.abnormal+uncertainty", grade)
        certainty = {1: "definite", 0: "absent", -1: "possible"}[value]
        return Mention(value, {1: "positive", -1: "uncertain"}.get(value, "negated"), ent, qualifier, rule, certainty)

    def _nearest(self, ent: Span, traces: dict[str, dict], finding: str) -> tuple[int, int, str, tuple] | None:
        best: tuple[int, int, str, tuple] | None = None
        for order, kind in enumerate(KIND_ORDER):
            hit = traces[kind].get((ent.start, ent.end))
            if hit is not None and kind == "resolved" and not self._historical_applies(hit[0], finding):
                continue
            if hit is not None and (best is None or (hit[1], order) < (best[0], best[1])):
                best = (hit[1], order, kind, hit)
        if best is not None and best[2] == "uncertainty" and best[3][0].lower() in GOVERNED_HEDGES:
            neg = traces["negation"].get((ent.start, ent.end))
            if neg is not None and neg[2] == "preceding" and neg[1] > best[0]:
                best = (neg[1], 1, "negation", neg)  # "no airspace disease to suggest pneumonia"
        return best

    def plain_mention(self, ent: Span, traces: dict[str, dict], finding: str) -> Mention | None:
        best = self._nearest(ent, traces, finding)
        if best is None:
            return Mention(1, "positive", ent, None, "mention", "definite")
        _, _, kind, (trigger, _dist, direction, reach, t0, t1) = best
        low = trigger.lower()
        if kind == "uncertainty":
            grade = self._grade(ent.doc, trigger, reach)
            if counts_as_present(grade, self.threshold):
                return Mention(1, "positive", ent, trigger, f"certainty.{direction}", grade)
            return Mention(-1, "uncertain", ent, trigger, f"uncertainty.{direction}", grade)
        if kind == "negation":
            return Mention(0, "negated", ent, trigger, f"negation.{direction}",
                           "unlikely" if low in self.unlikely else "absent")
        if low in HYPOTHETICAL:
            return None  # "rib fractures may be occult on radiographs" asserts nothing about this patient
        if HISTORICAL.is_historical(trigger):
            study = low not in HISTORICAL.triggers  # "the effusion seen on the prior CT": another study's finding
            if _persists(ent, range(t0, t1)) or (study and _changed_before(ent)):
                return Mention(1, "positive", ent, None, "historical.persists", "definite")
            return Mention(0, "historical", ent, trigger, f"historical.{direction}", "absent")
        return Mention(0, "resolved", ent, trigger, f"resolved.{direction}", "absent")

    def _grade(self, doc: Doc, trigger: str, reach: tuple[tuple[int, int], ...]) -> str:
        """The nearest hedge's grade, lowered by a weaker one over the same clause ("possible opacity
        consistent with pneumonia" is possible)."""
        grade = self.lexicon.grade(trigger)
        if grade in ("consistent", "definite"):
            grades = [self.lexicon.grade(doc[a:b].text) for a, b in reach]
            grade = max([grade, *grades], key=CERTAINTY_RANK.__getitem__)
        return grade

    @staticmethod
    def _historical_applies(trigger: str, finding: str) -> bool:
        """"Previous pneumonia" is past; "previous sternotomy" or "prior rib fracture" is still there."""
        return trigger.lower() not in HISTORICAL.short_reach or finding in HISTORICAL.short_reach_findings


def _before_mention(doc: Doc, i: int, limit: int) -> bool:
    """Is token i a qualifier of the mention right after it ("obscured by a large hiatus hernia")?"""
    if i == 0 or doc[i - 1].lower_ not in NOUN_PHRASE_OPENERS:
        return False
    for j in range(i + 1, min(limit, i + 3)):
        if doc[j].ent_iob_ == "B":
            return True
        if doc[j].is_punct:
            return False
    return False


def _normal_follows(doc: Doc, i: int, kinds: dict[int, Any]) -> bool:
    j = i + 1
    if j < len(doc) and doc[j].text in ("-", "to"):
        j += 1
    return j < len(doc) and doc[j].lower_ == "normal"


def _changed_before(ent: Span) -> bool:
    """A change or persistence word just before a mention attributed to another study ("interval decrease in the
    effusion seen on the prior radiograph", "stable nodule noted on prior CT"): it is still there."""
    doc = ent.doc
    start = max(sentence_bounds(doc, ent.start)[0], ent.start - 4)
    return any(t.lower_ in HISTORICAL.changed_before for t in doc[start:ent.start])


def _persists(ent: Span, trigger: range = range(0)) -> bool:
    """Does the mention's own clause, after it, say it is still there ("..., which is unchanged")?

    Stops at the next mention; a persistence word right before another mention modifies that one
    ("history of CHF with stable cardiomegaly"); the words of the trigger itself do not count ("was
    present on the prior CT").
    """
    doc = ent.doc
    end = sentence_bounds(doc, ent.start)[1]
    for i in range(ent.end, end):
        tok = doc[i]
        if tok.ent_iob_ == "B":
            return False
        if tok.lower_ in HISTORICAL.persistence and i not in trigger and doc[max(0, i - 1)].lower_ not in NEGATED_BY:
            ahead = doc[i + 1:min(end, i + 3)]
            if not any(t.ent_iob_ == "B" for t in ahead):
                return True
    return False
