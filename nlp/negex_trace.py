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

from spacy.language import Language
from spacy.tokens import Doc, Span

from negspacy.negation import Negex

TRACE_KEY = "radsim.negex"
IGNORE_LABEL = "ignore"
# Tokens that may join a list of mentions under one following trigger.
LIST_GLUE = frozenset(
    {",", "and", "or", "nor", "/", "either", "neither", "the", "a", "an", "any", "left", "right", "bilateral",
     "small", "large", "significant", "focal", "definite", "new", "residual", "further", "obvious", "other"}
)
LIST_CONJUNCTIONS = frozenset({"and", "or", "nor", "/"})


class TracingNegex(Negex):
    def __init__(self, nlp: Language, name: str, neg_termset: dict[str, list[str]], extension_name: str,
                 adjacent_following: list[str], max_following_gap: int, max_preceding_gap: int):
        super().__init__(nlp, name, neg_termset, ent_types=None, extension_name=extension_name)
        self.adjacent = {t.lower() for t in adjacent_following}
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

    def negex(self, doc: Doc) -> Doc:
        ents = [e for e in doc.ents if e.label_ != IGNORE_LABEL]
        if not ents:
            return doc
        preceding, following, terminating = self.process_negations(doc)
        if not preceding and not following:
            return doc
        bounds = self.termination_boundaries(doc, terminating)
        starts = [b[0] for b in bounds]
        trace: dict[tuple[int, int], tuple[str, int, str]] = doc.user_data.setdefault((TRACE_KEY, self.extension_name), {})

        by_bound_pre: dict[int, list[tuple[int, int]]] = {}
        by_bound_fol: dict[int, list[tuple[int, int]]] = {}
        for group, matches in ((by_bound_pre, preceding), (by_bound_fol, following)):
            for _, t0, t1 in matches:  # bucket triggers per boundary: linear, even for a 1 MB report
                group.setdefault(bisect_right(starts, t0) - 1, []).append((t0, t1))
        for i, ent in enumerate(ents):
            k = bisect_right(starts, ent.start) - 1
            b0, b1 = bounds[k]
            best: tuple[int, str, str] | None = None  # (distance, trigger, direction)
            for t0, t1 in by_bound_pre.get(k, ()):
                if t0 < ent.start and ent.start - t1 <= self.max_preceding_gap:
                    dist = max(0, ent.start - t1)
                    if best is None or dist < best[0]:
                        best = (dist, doc[t0:t1].text, "preceding")
            nearest_following = None
            for t0, t1 in by_bound_fol.get(k, ()):
                if ent.end <= t0 < b1 and (nearest_following is None or t0 < nearest_following[0]):
                    nearest_following = (t0, t1)
            if nearest_following is not None:
                t0, t1 = nearest_following
                text = doc[t0:t1].text
                if self._reaches_back(doc, ents, i, t0, text.lower() in self.adjacent):
                    dist = t0 - ent.end
                    if best is None or dist < best[0]:
                        best = (dist, text, "following")
            if best is not None:
                ent._.set(self.extension_name, True)
                trace[(ent.start, ent.end)] = (best[1], best[0], best[2])
        return doc


@Language.factory(
    "radsim_negex",
    default_config={
        "neg_termset": {"pseudo_negations": [], "preceding_negations": [], "following_negations": [], "termination": []},
        "extension_name": "negex",
        "adjacent_following": [],
        "max_following_gap": 8,
        "max_preceding_gap": 40,
    },
)
def make_tracing_negex(nlp: Language, name: str, neg_termset: dict, extension_name: str, adjacent_following: list,
                       max_following_gap: int, max_preceding_gap: int) -> TracingNegex:
    return TracingNegex(nlp, name, neg_termset, extension_name, adjacent_following, max_following_gap, max_preceding_gap)


def trace(doc: Doc, extension_name: str) -> dict[tuple[int, int], tuple[str, int, str]]:
    """{(ent.start, ent.end): (trigger text, token distance, 'preceding'|'following')} for one instance."""
    return doc.user_data.get((TRACE_KEY, extension_name), {})
