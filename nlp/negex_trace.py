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
from spacy.matcher import Matcher
from spacy.tokens import Doc, Span

from negspacy.negation import Negex

TRACE_KEY = "radsim.negex"
IGNORE_LABEL = "ignore"
# Tokens that may join a list of mentions under one following trigger.
LIST_GLUE = frozenset(
    {",", "and", "or", "nor", "/", "either", "neither", "the", "a", "an", "any", "left", "right", "bilateral",
     "small", "large", "significant", "focal", "definite", "new", "residual", "further", "obvious", "other",
     "moderate", "confluent", "acute", "sizable", "sizeable", "appreciable", "xxxx", "upper", "lower", "middle",
     "mid", "lobe", "base", "basal", "bibasal", "bibasilar", "apical", "zone", "perihilar", "retrocardiac", "of"}
)
LIST_CONJUNCTIONS = frozenset({"and", "or", "nor", "/"})
# A comma termination (", large") starts a new clause ("no pneumothorax, small left effusion") unless
# the list goes on to one of these before the sentence ends ("no opacity, large effusion or pneumothorax").
LIST_CONTINUES = frozenset({"or", "nor", "/"})  # "/": "no consolidation, large effusion/pneumothorax"
# A hedging adverb right before one of these (or before a mention) hedges what comes next, not what
# came before: "consolidation likely represents pneumonia" keeps the consolidation.
HEDGE_ADVERBS = frozenset({"likely", "possibly", "probably"})  # the last word of the trigger ("is less likely")
FORWARD_WORDS = frozenset({"represents", "represent", "representing", "reflects", "reflect", "reflecting", "due",
                           "secondary", "related", "indicates", "indicating", "consistent", "compatible", "from",
                           "to", "a", "an", "the", "reflective", "representative", "caused", "in"})


# A following trigger whose verb is singular ("which has cleared", "is no longer seen") reaches only the
# mention before it, not back over a list joined by "and" ("cardiomegaly and oedema, which has cleared").
SINGULAR = frozenset({"has", "is", "was"})
PLURAL = frozenset({"have", "are", "were"})
RELATIVE = frozenset({"which", "that"})  # ", which has resolved": the comma opens a clause about the mention


class TracingNegex(Negex):
    def __init__(self, nlp: Language, name: str, neg_termset: dict[str, list[str]], extension_name: str,
                 adjacent_following: list[str], max_following_gap: int, max_preceding_gap: int,
                 short_preceding: list[str], short_preceding_gap: int, token_preceding: list[list[dict]],
                 token_following: list[list[dict]]):
        super().__init__(nlp, name, neg_termset, ent_types=None, extension_name=extension_name)
        self.adjacent = {t.lower() for t in adjacent_following}
        self.short = {t.lower() for t in short_preceding}
        self.short_gap = short_preceding_gap
        self.max_following_gap = max_following_gap
        self.max_preceding_gap = max_preceding_gap
        self.token_matcher: Matcher | None = None
        if token_preceding or token_following:
            self.token_matcher = Matcher(nlp.vocab)
            for key, patterns in (("Preceding", token_preceding), ("Following", token_following)):
                if patterns:
                    self.token_matcher.add(key, patterns)

    def process_negations(self, doc: Doc) -> tuple[list, list, list]:
        """negspacy's phrase triggers, plus token-pattern triggers with gaps ("previous CT from March showed"),
        all subject to the pseudo phrases."""
        matches = list(self.matcher(doc))
        if self.token_matcher is not None:
            matches += list(self.token_matcher(doc))
        strings = self.nlp.vocab.strings
        pseudo = [(s, e) for m, s, e in matches if strings[m] == "pseudo"]
        out: dict[str, list] = {"Preceding": [], "Following": [], "Termination": []}
        for match_id, start, end in matches:
            kind = strings[match_id]
            if kind != "pseudo" and not any(p0 <= start <= p1 for p0, p1 in pseudo):
                out[kind].append((match_id, start, end))
        return out["Preceding"], out["Following"], out["Termination"]

    def _reaches_back(self, doc: Doc, ents: list[Span], i: int, t_start: int, t_end: int, adjacent: bool) -> bool:
        end = ents[i].end
        j = i + 1
        comma_link = conjunction = and_link = False
        while j < len(ents) and ents[j].end <= t_start:
            between = doc[end:ents[j].start]
            if adjacent or any(tok.lower_ not in LIST_GLUE for tok in between):
                return False
            words = {tok.lower_ for tok in between}
            conjunction |= bool(words & LIST_CONJUNCTIONS)
            comma_link |= "," in words
            and_link |= bool(words & {"and", ","})
            end = ents[j].end
            j += 1
        if comma_link and not conjunction:  # "consolidation, pneumothorax not seen" is two clauses
            return False
        gap = doc[end:t_start]
        if adjacent:
            return len(gap) <= 1
        verbs = {tok.lower_ for tok in doc[end:t_end]}
        if j > i + 1 and and_link and verbs & SINGULAR and not verbs & PLURAL:
            return False
        if len(gap) > self.max_following_gap:
            return False
        commas = [k for k, tok in enumerate(gap) if tok.text == ","]
        return not commas or (commas == [0] and len(gap) > 1 and gap[1].lower_ in RELATIVE)

    @staticmethod
    def _clause_terminations(doc: Doc, terminating: list[tuple[int, int, int]], triggers: list[tuple[int, int, int]],
                             following: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
        """Drop a termination inside a trigger ("with" in "in keeping with a ...") and a relative pronoun that
        opens a following trigger's clause ("..., which has cleared")."""
        spans = [(t0, t1) for _, t0, t1 in triggers]
        starts = {t0 for _, t0, _ in following}
        kept = []
        for match in terminating:
            _, t0, t1 = match
            if any(a <= t0 < b for a, b in spans):
                continue
            if doc[t0].lower_ in RELATIVE and t1 - t0 == 1 and starts & set(range(t1, t1 + 3)):
                continue
            kept.append(match)
        return kept

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
        terminating = self._clause_terminations(doc, terminating, preceding + following, following)
        bounds = self.termination_boundaries(doc, self._list_terminations(doc, terminating))
        starts = [b[0] for b in bounds]
        trace: dict[tuple[int, int], tuple] = doc.user_data.setdefault((TRACE_KEY, self.extension_name), {})

        by_bound_pre: dict[int, list[tuple[int, int]]] = {}
        by_bound_fol: dict[int, list[tuple[int, int]]] = {}
        for group, matches in ((by_bound_pre, preceding), (by_bound_fol, following)):
            for _, t0, t1 in matches:  # bucket triggers per boundary: linear, even for a 1 MB report
                group.setdefault(bisect_right(starts, t0) - 1, []).append((t0, t1))
        for i, ent in enumerate(ents):
            k = bisect_right(starts, ent.start) - 1
            b0, b1 = bounds[k]
            best: tuple[int, int, str, str, int, int] | None = None  # (distance, -length, trigger, direction, t0, t1)
            reach: list[str] = []
            for t0, t1 in by_bound_pre.get(k, ()):
                if t0 < ent.start and ent.start - t1 <= self.max_preceding_gap:
                    if self.short and not self._in_short_reach(doc, t0, t1, ent.start):
                        continue
                    dist = max(0, ent.start - t1)
                    text = doc[t0:t1].text
                    reach.append(text)
                    if best is None or (dist, t0 - t1) < best[:2]:  # nearest; of two ending together, the longer
                        best = (dist, t0 - t1, text, "preceding", t0, t1)
            nearest_following = None
            for t0, t1 in by_bound_fol.get(k, ()):
                if ent.end <= t0 < b1 and (nearest_following is None or (t0, -t1) < (nearest_following[0],
                                                                                    -nearest_following[1])):
                    nearest_following = (t0, t1)  # the nearest; of two starting together, the longer
            if nearest_following is not None:
                t0, t1 = nearest_following
                text = doc[t0:t1].text
                if self._reaches_back(doc, ents, i, t0, t1, text.lower() in self.adjacent):
                    dist = t0 - ent.end
                    reach.append(text)
                    if best is None or dist < best[0]:
                        best = (dist, 0, text, "following", t0, t1)
            if best is not None:
                ent._.set(self.extension_name, True)
                trace[(ent.start, ent.end)] = (best[2], best[0], best[3], tuple(reach), best[4], best[5])
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
        "token_preceding": [],
        "token_following": [],
    },
)
def make_tracing_negex(nlp: Language, name: str, neg_termset: dict, extension_name: str, adjacent_following: list,
                       max_following_gap: int, max_preceding_gap: int, short_preceding: list,
                       short_preceding_gap: int, token_preceding: list, token_following: list) -> TracingNegex:
    return TracingNegex(nlp, name, neg_termset, extension_name, adjacent_following, max_following_gap,
                        max_preceding_gap, short_preceding, short_preceding_gap, token_preceding, token_following)


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


def trace(doc: Doc, extension_name: str) -> dict[tuple[int, int], tuple]:
    """{(ent.start, ent.end): (nearest trigger, token distance, 'preceding'|'following', every trigger in reach,
    trigger start, trigger end)} for one instance."""
    return doc.user_data.get((TRACE_KEY, extension_name), {})
