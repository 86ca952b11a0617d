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
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from negspacy.negation import Negex
from spacy.language import Language
from spacy.tokens import Doc, Span

from .arrays import MENTIONS_KEY, all_entities, word_arrays
from .study_refs import StudyReferences

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


@dataclass(frozen=True)
class TriggerReach:
    """How far a trigger reaches, beyond negspacy's own rules (the `radsim_negex` factory's config)."""

    adjacent_following: Sequence[str]  # following triggers that reach only a mention right before them
    max_following_gap: int  # tokens a following trigger reaches back over, within the mention's clause
    max_preceding_gap: int  # tokens a preceding trigger reaches forward over
    short_preceding: Sequence[str]  # preceding triggers that reach only `short_preceding_gap` tokens
    short_preceding_gap: int
    study_reference: dict[str, list[str]]  # phrases that attribute a finding to another study (with gaps)


class TracingNegex(Negex):
    def __init__(self, nlp: Language, name: str, neg_termset: dict[str, list[str]], extension_name: str,
                 reach: TriggerReach):
        super().__init__(nlp, name, neg_termset, ent_types=None, extension_name=extension_name)
        self.adjacent = {t.lower() for t in reach.adjacent_following}
        self.short = {t.lower() for t in reach.short_preceding}
        self.short_gap = reach.short_preceding_gap
        self.max_following_gap = reach.max_following_gap
        self.max_preceding_gap = reach.max_preceding_gap
        strings = nlp.vocab.strings
        self.study_refs = StudyReferences(nlp.vocab, reach.study_reference, strings.add("Preceding"),
                                          strings.add("Following")) if reach.study_reference else None
        self._kind = {strings.add(k): k for k in ("pseudo", "Preceding", "Following", "Termination")}

        def ids(words: frozenset[str]) -> frozenset[int]:  # LOWER hashes, compared with the doc's array
            return frozenset(strings.add(w) for w in words)

        self._glue, self._conj, self._continues = ids(LIST_GLUE), ids(LIST_CONJUNCTIONS), ids(LIST_CONTINUES)
        self._and_comma, self._comma = ids(frozenset({"and", ","})), strings.add(",")
        self._singular, self._plural, self._relative = ids(SINGULAR), ids(PLURAL), ids(RELATIVE)
        self.short_ids = {tuple(strings.add(t.text.lower()) for t in nlp.make_doc(w)) for w in self.short}

    def process_negations(self, doc: Doc) -> tuple[list, list, list]:
        """negspacy's phrase triggers, plus triggers with gaps that attribute a finding to another study
        ("previous CT from March showed"), all subject to the pseudo phrases."""
        matches = list(self.matcher(doc))
        if self.study_refs is not None:
            matches += self.study_refs(doc)
        kinds = self._kind
        pseudo = [(s, e) for m, s, e in matches if kinds[m] == "pseudo"]
        out: dict[str, list] = {"Preceding": [], "Following": [], "Termination": []}
        for match_id, start, end in matches:
            kind = kinds[match_id]
            if kind != "pseudo" and not (pseudo and any(p0 <= start <= p1 for p0, p1 in pseudo)):
                out[kind].append((match_id, start, end))
        return out["Preceding"], out["Following"], out["Termination"]

    def _reaches_back(self, lower: list[int], ents: list[Span], i: int, t_start: int, t_end: int,
                      adjacent: bool) -> bool:
        end = ents[i].end
        j = i + 1
        comma_link = conjunction = and_link = False
        while j < len(ents) and ents[j].end <= t_start:
            between = set(lower[end:ents[j].start])
            if adjacent or not between <= self._glue:
                return False
            conjunction |= not between.isdisjoint(self._conj)
            comma_link |= self._comma in between
            and_link |= not between.isdisjoint(self._and_comma)
            end = ents[j].end
            j += 1
        if comma_link and not conjunction:  # "consolidation, pneumothorax not seen" is two clauses
            return False
        gap = lower[end:t_start]
        if adjacent:
            return len(gap) <= 1
        verbs = set(lower[end:t_end])
        if j > i + 1 and and_link and not verbs.isdisjoint(self._singular) and verbs.isdisjoint(self._plural):
            return False
        if len(gap) > self.max_following_gap:
            return False
        commas = [k for k, w in enumerate(gap) if w == self._comma]
        return not commas or (commas == [0] and len(gap) > 1 and gap[1] in self._relative)

    def _clause_terminations(self, lower: list[int], terminating: list[tuple[int, int, int]],
                             triggers: list[tuple[int, int, int]],
                             following: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
        """Drop a termination inside a trigger ("with" in "in keeping with a ...") and a relative pronoun that
        opens a following trigger's clause ("..., which has cleared")."""
        if not terminating:
            return terminating
        inside = {k for _, t0, t1 in triggers for k in range(t0, t1)}
        starts = {t0 for _, t0, _ in following}
        kept = []
        for match in terminating:
            _, t0, t1 = match
            if t0 in inside:
                continue
            if lower[t0] in self._relative and t1 - t0 == 1 and (t1 in starts or t1 + 1 in starts or t1 + 2 in starts):
                continue
            kept.append(match)
        return kept

    @staticmethod
    def _hedges_forward(doc: Doc, t0: int, t1: int) -> bool:
        if t1 >= len(doc) or doc[t1 - 1].lower_ not in HEDGE_ADVERBS:
            return False
        nxt = doc[t1]
        return nxt.lower_ in FORWARD_WORDS or nxt.ent_iob_ == "B"

    def _list_terminations(self, doc: Doc, lower: list[int],
                           terminating: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
        """Drop a comma termination whose clause goes on as a list ("..., large effusion or pneumothorax")."""
        comma = self._comma
        if not any(lower[t0] == comma for _, t0, _ in terminating):
            return terminating
        other_starts = sorted(t0 for _, t0, _ in terminating if lower[t0] != comma)
        sents = sentence_starts(doc)
        kept = []
        for match in terminating:
            _, t0, t1 = match
            if lower[t0] == comma:
                k = bisect_right(sents, t0)
                sent_end = sents[k] if k < len(sents) else len(doc)
                stop = min([s for s in other_starts if s > t0] + [sent_end])
                if not self._continues.isdisjoint(lower[t1:stop]):
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
        lower = word_arrays(doc)[0]
        terminating = self._clause_terminations(lower, terminating, preceding + following, following)
        bounds = self.termination_boundaries(doc, self._list_terminations(doc, lower, terminating))
        texts: dict[tuple[int, int], str] = {}

        def text_of(t0: int, t1: int) -> str:
            found = texts.get((t0, t1))
            if found is None:
                found = texts[(t0, t1)] = doc[t0:t1].text
            return found

        starts = [b[0] for b in bounds]
        trace: dict[tuple[int, int], tuple] = doc.user_data.setdefault((TRACE_KEY, self.extension_name), {})

        by_bound_pre: dict[int, list[tuple[int, int]]] = {}
        by_bound_fol: dict[int, list[tuple[int, int]]] = {}
        for group, matches in ((by_bound_pre, preceding), (by_bound_fol, following)):
            for _, t0, t1 in matches:  # bucket triggers per boundary: linear, even for a 1 MB report
                group.setdefault(bisect_right(starts, t0) - 1, []).append((t0, t1))
        for i, ent in enumerate(ents):
            k = bisect_right(starts, ent.start) - 1
            if k not in by_bound_pre and k not in by_bound_fol:
                continue  # no trigger in the mention's clause
            found = self._trace_one(lower, ents, i, k, bounds, by_bound_pre, by_bound_fol, text_of)
            if found is not None:  # read through `trace`; negspacy's Span extension is left unset
                trace[(ent.start, ent.end)] = found
        return doc


    def _trace_one(self, lower: list[int], ents: list[Span], i: int, k: int, bounds: list[tuple[int, int]],
                   pre: dict[int, list[tuple[int, int]]], fol: dict[int, list[tuple[int, int]]],
                   text_of: Callable[[int, int], str]) -> tuple | None:
        """(trigger, distance, direction, triggers in reach as (start, end), start, end) of the trigger nearest
        mention i (in clause k), or None. Trigger texts are read only for the nearest one."""
        ent = ents[i]
        b1 = bounds[k][1]
        best: tuple[int, int, str, int, int] | None = None  # (distance, -length, direction, t0, t1)
        reach: list[tuple[int, int]] = []
        for t0, t1 in pre.get(k, ()):
            if t0 < ent.start and ent.start - t1 <= self.max_preceding_gap:
                if self.short_ids and tuple(lower[t0:t1]) in self.short_ids and \
                        (ent.start - t1 > self.short_gap or self._comma in lower[t1:ent.start]):
                    continue  # a short-reach trigger ("previous") governs only a mention a few tokens on
                dist = max(0, ent.start - t1)
                reach.append((t0, t1))
                if best is None or (dist, t0 - t1) < best[:2]:  # nearest; of two ending together, the longer
                    best = (dist, t0 - t1, "preceding", t0, t1)
        nearest: tuple[int, int] | None = None
        for t0, t1 in fol.get(k, ()):
            if ent.end <= t0 < b1 and (nearest is None or (t0, -t1) < (nearest[0], -nearest[1])):
                nearest = (t0, t1)  # the nearest; of two starting together, the longer
        if nearest is not None:
            t0, t1 = nearest
            if self._reaches_back(lower, ents, i, t0, t1, text_of(t0, t1).lower() in self.adjacent):
                reach.append((t0, t1))
                if best is None or t0 - ent.end < best[0]:
                    best = (t0 - ent.end, 0, "following", t0, t1)
        if best is None:
            return None
        return text_of(best[3], best[4]), best[0], best[2], tuple(reach), best[3], best[4]


@Language.factory(
    "radsim_negex",
    default_config={
        "neg_termset": {
            "pseudo_negations": [],
            "preceding_negations": [],
            "following_negations": [],
            "termination": [],
        },
        "extension_name": "negex",
        "adjacent_following": [],
        "max_following_gap": 8,
        "max_preceding_gap": 40,
        "short_preceding": [],
        "short_preceding_gap": 3,
        "study_reference": {},
    },
)
def make_tracing_negex(nlp: Language, name: str, neg_termset: dict, extension_name: str, adjacent_following: list,
                       max_following_gap: int, max_preceding_gap: int, short_preceding: list,
                       short_preceding_gap: int, study_reference: dict) -> TracingNegex:
    """The `radsim_negex` component. Ten parameters because spaCy calls a factory with each key of its
    config as a keyword (the defaults above are that config's one declaration); they become a TriggerReach."""
    reach = TriggerReach(adjacent_following, max_following_gap, max_preceding_gap, short_preceding,
                         short_preceding_gap, study_reference)
    return TracingNegex(nlp, name, neg_termset, extension_name, reach)


def mentions(doc: Doc) -> list[Span]:
    """The doc's entities other than ignore phrases, built once per doc."""
    cached = doc.user_data.get(MENTIONS_KEY)
    if cached is None:
        ignore = doc.vocab.strings.add(IGNORE_LABEL)
        cached = doc.user_data[MENTIONS_KEY] = [e for e in all_entities(doc) if e.label != ignore]
    return cached


def sentence_starts(doc: Doc) -> list[int]:
    """Token indices where sentences start, read from the array once per doc."""
    cached = doc.user_data.get((TRACE_KEY, "sents"))
    if cached is None:
        flags = word_arrays(doc)[1]
        cached = doc.user_data[(TRACE_KEY, "sents")] = [0, *(i for i, f in enumerate(flags) if f == 1 and i)]
    return cached


def sentence_bounds(doc: Doc, token: int) -> tuple[int, int]:
    """(start, end) of the sentence holding a token."""
    starts = sentence_starts(doc)
    k = bisect_right(starts, token)
    return starts[k - 1], (starts[k] if k < len(starts) else len(doc))


def trace(doc: Doc, extension_name: str) -> dict[tuple[int, int], tuple]:
    """{(ent.start, ent.end): (nearest trigger, token distance, 'preceding'|'following', every trigger in reach
    as (start, end), trigger start, trigger end)} for one instance."""
    return doc.user_data.get((TRACE_KEY, extension_name), {})
