"""negspacy's Negex, extended to say *which* trigger fired and to keep following triggers local.

Evidence needs the trigger, which negspacy does not expose. We keep negspacy's termsets, pseudo
handling, PhraseMatcher and termination boundaries, and change only the assignment loop:
- the nearest trigger is recorded with its token distance, so the labeler can let the closest of
  the negation / uncertainty / resolved instances win ("possible consolidation, no effusion");
- a following trigger ("is not seen", "has resolved") reaches back only over the mention's own
  clause (≤ `max_following_gap` tokens, no comma) or over a list of mentions joined by list glue
  ("effusion and pneumothorax are not seen"); plain negex negates every earlier mention in the
  sentence ("left effusion, pneumothorax is not seen").
"""
from __future__ import annotations

from bisect import bisect_right

import numpy as np

from spacy.language import Language
from spacy.tokens import Doc, Span

from negspacy.negation import Negex

TRACE_KEY = "radsim.negex"
IGNORE_LABEL = "ignore"
# Tokens that may join a list of mentions under one following trigger.
LIST_GLUE = frozenset(
    {",", "and", "or", "nor", "/", "either", "neither", "the", "a", "an", "any", "left", "right", "bilateral",
     "small", "large", "significant", "focal", "definite", "new", "residual", "further", "obvious", "other",
     "moderate", "confluent", "acute", "sizable", "sizeable", "appreciable", "xxxx"}
)
LIST_CONJUNCTIONS = frozenset({"and", "or", "nor", "/"})
# A comma termination (", large") starts a new clause ("no pneumothorax, small left effusion") unless
# the list goes on to one of these before the sentence ends ("no opacity, large effusion or pneumothorax").
LIST_CONTINUES = frozenset({"or", "nor"})
# A hedging adverb right before one of these (or before a mention) hedges what comes next, not what
# came before: "consolidation likely represents pneumonia" keeps the consolidation.
HEDGE_ADVERBS = frozenset({"likely", "possibly", "probably"})  # the last word of the trigger ("is less likely")
FORWARD_WORDS = frozenset({"represents", "represent", "representing", "reflects", "reflect", "reflecting", "due",
                           "secondary", "related", "indicates", "indicating", "consistent", "compatible", "from",
                           "to", "a", "an", "the", "reflective", "representative", "caused", "in"})


class TracingNegex(Negex):
    def __init__(self, nlp: Language, name: str, neg_termset: dict[str, list[str]], extension_name: str,
                 adjacent_following: list[str], max_following_gap: int, max_preceding_gap: int,
                 short_preceding: list[str], short_preceding_gap: int):
        super().__init__(nlp, name, neg_termset, ent_types=None, extension_name=extension_name)
        self.adjacent = {t.lower() for t in adjacent_following}
        self.short = {t.lower() for t in short_preceding}
        self.short_gap = short_preceding_gap
        self.max_following_gap = max_following_gap
        self.max_preceding_gap = max_preceding_gap

    def _reaches_back(self, doc: Doc, ents: list[Span], i: int, t_start: int, adjacent: bool) -> bool:
        end = ents[i].end
        j = i + 1
        comma_link = conjunction = False
        while j < len(ents) and ents[j].end <= t_start:
            between = doc[end:ents[j].start]
            if adjacent or any(tok.lower_ not in LIST_GLUE for tok in between):
                return False
            words = {tok.lower_ for tok in between}
            conjunction |= bool(words & LIST_CONJUNCTIONS)
            comma_link |= "," in words
            end = ents[j].end
            j += 1
        if comma_link and not conjunction:  # "consolidation, pneumothorax not seen" is two clauses
            return False
        gap = doc[end:t_start]
        if adjacent:
            return len(gap) <= 1
        return len(gap) <= self.max_following_gap and not any(tok.text == "," for tok in gap)

    def _in_short_reach(self, doc: Doc, t0: int, t1: int, start: int) -> bool:
        """A short-reach trigger ("previous") governs only a mention a few tokens on, with no comma between."""
        if doc[t0:t1].text.lower() not in self.short:
            return True
        return start - t1 <= self.short_gap and not any(tok.text == "," for tok in doc[t1:start])

    @staticmethod
    def _hedges_forward(doc: Doc, t0: int, t1: int) -> bool:
        if t1 >= len(doc) or doc[t1 - 1].lower_ not in HEDGE_ADVERBS:
            return False
        nxt = doc[t1]
        return nxt.lower_ in FORWARD_WORDS or nxt.ent_iob_ == "B"

    @staticmethod
    def _list_terminations(doc: Doc, terminating: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
        """Drop a comma termination whose clause goes on as a list ("..., large effusion or pneumothorax")."""
        if not any(doc[t0].text == "," for _, t0, _ in terminating):
            return terminating
        other_starts = sorted(t0 for _, t0, _ in terminating if doc[t0].text != ",")
        sents = sentence_starts(doc)
        kept = []
        for match in terminating:
            _, t0, t1 = match
            if doc[t0].text == ",":
                k = bisect_right(sents, t0)
                sent_end = sents[k] if k < len(sents) else len(doc)
                stop = min([s for s in other_starts if s > t0] + [sent_end])
                if any(tok.lower_ in LIST_CONTINUES for tok in doc[t1:stop]):
                    continue
            kept.append(match)
        return kept

    def termination_boundaries(self, doc: Doc, terminating: list[tuple[int, int, int]]) -> list[tuple[int, int]]:
        """negspacy's boundaries, from sentence starts read once per doc (Doc.sents builds a Span per sentence)."""
        starts = sorted({*sentence_starts(doc), *(t[1] for t in terminating)} | {len(doc)})
        if starts[0] != 0:
            starts.insert(0, 0)
        return list(zip(starts, starts[1:]))

    def negex(self, doc: Doc) -> Doc:
        ents = mentions(doc)
        if not ents:
            return doc
        preceding, following, terminating = self.process_negations(doc)
        if not preceding and not following:
            return doc
        following = [m for m in following if not self._hedges_forward(doc, m[1], m[2])]
        bounds = self.termination_boundaries(doc, self._list_terminations(doc, terminating))
        starts = [b[0] for b in bounds]
        trace: dict[tuple[int, int], tuple[str, int, str, tuple[str, ...]]] = doc.user_data.setdefault((TRACE_KEY, self.extension_name), {})

        by_bound_pre: dict[int, list[tuple[int, int]]] = {}
        by_bound_fol: dict[int, list[tuple[int, int]]] = {}
        for group, matches in ((by_bound_pre, preceding), (by_bound_fol, following)):
            for _, t0, t1 in matches:  # bucket triggers per boundary: linear, even for a 1 MB report
                group.setdefault(bisect_right(starts, t0) - 1, []).append((t0, t1))
        for i, ent in enumerate(ents):
            k = bisect_right(starts, ent.start) - 1
            b0, b1 = bounds[k]
            best: tuple[int, int, str, str] | None = None  # (distance, -length, trigger, direction)
            reach: list[str] = []
            for t0, t1 in by_bound_pre.get(k, ()):
                if t0 < ent.start and ent.start - t1 <= self.max_preceding_gap:
                    if self.short and not self._in_short_reach(doc, t0, t1, ent.start):
                        continue
                    dist = max(0, ent.start - t1)
                    text = doc[t0:t1].text
                    reach.append(text)
                    if best is None or (dist, t0 - t1) < best[:2]:  # nearest; of two ending together, the longer
                        best = (dist, t0 - t1, text, "preceding")
            nearest_following = None
            for t0, t1 in by_bound_fol.get(k, ()):
                if ent.end <= t0 < b1 and (nearest_following is None or t0 < nearest_following[0]):
                    nearest_following = (t0, t1)
            if nearest_following is not None:
                t0, t1 = nearest_following
                text = doc[t0:t1].text
                if self._reaches_back(doc, ents, i, t0, text.lower() in self.adjacent):
                    dist = t0 - ent.end
                    reach.append(text)
                    if best is None or dist < best[0]:
                        best = (dist, 0, text, "following")
            if best is not None:
                ent._.set(self.extension_name, True)
                trace[(ent.start, ent.end)] = (best[2], best[0], best[3], tuple(reach))
        return doc


@Language.factory(
    "radsim_negex",
    default_config={
        "neg_termset": {"pseudo_negations": [], "preceding_negations": [], "following_negations": [], "termination": []},
        "extension_name": "negex",
        "adjacent_following": [],
        "max_following_gap": 8,
        "max_preceding_gap": 40,
        "short_preceding": [],
        "short_preceding_gap": 3,
    },
)
def make_tracing_negex(nlp: Language, name: str, neg_termset: dict, extension_name: str, adjacent_following: list,
                       max_following_gap: int, max_preceding_gap: int, short_preceding: list,
                       short_preceding_gap: int) -> TracingNegex:
    return TracingNegex(nlp, name, neg_termset, extension_name, adjacent_following, max_following_gap,
                        max_preceding_gap, short_preceding, short_preceding_gap)


def mentions(doc: Doc) -> list[Span]:
    """The doc's entities other than ignore phrases, built once per doc (Doc.ents walks every token)."""
    cached = doc.user_data.get((TRACE_KEY, "ents"))
    if cached is None:
        cached = doc.user_data[(TRACE_KEY, "ents")] = [e for e in doc.ents if e.label_ != IGNORE_LABEL]
    return cached


def sentence_starts(doc: Doc) -> list[int]:
    """Token indices where sentences start, read from the array once per doc."""
    cached = doc.user_data.get((TRACE_KEY, "sents"))
    if cached is None:
        flags = doc.to_array("SENT_START")
        cached = doc.user_data[(TRACE_KEY, "sents")] = [0, *(i for i in np.flatnonzero(flags == 1).tolist() if i)]
    return cached


def trace(doc: Doc, extension_name: str) -> dict[tuple[int, int], tuple[str, int, str, tuple[str, ...]]]:
    """{(ent.start, ent.end): (nearest trigger, token distance, 'preceding'|'following', every trigger in reach)}."""
    return doc.user_data.get((TRACE_KEY, extension_name), {})
