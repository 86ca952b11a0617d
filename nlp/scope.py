"""Rules that reach past one mention: a density the same sentence explains away, and implied findings.

- "Nodular density at the left base, likely a nipple shadow": the density is the nipple, not a lung
  lesion. A lesion or opacity mention followed in its sentence by an explainer (nipple or skin
  lesion, overlapping vessel or bone, calcified granuloma, ...) through a linking word ("likely",
  "due to", "representing", a comma) is no mention; with a weak link ("possibly", "may") it is
  uncertain. The explainer may come first through a verb ("overlapping vessels mimic a nodule").
- "Hydropneumothorax" is a pneumothorax and an effusion: one phrase, several findings
  (`implies` in phrases.yaml).
"""
from __future__ import annotations

from typing import Any

from spacy.tokens import Doc, Span

from .arrays import all_entities
from .mentions import Mention
from .negex_trace import sentence_bounds

_BREAKS = frozenset({";", "but", "however", "although", "whereas", "while", "and", "also"})
# words after a link that put the explainer elsewhere: "the nodule is obscured by the clavicle"
_BLOCKERS = frozenset({"by", "behind", "over", "under", "beneath", "above", "near", "obscured", "obscuring", "obscures",
                       "projecting", "projects", "adjacent", "beside", "not"})


class ScopeRules:
    def __init__(self, cfg: dict[str, Any], implications: dict[str, tuple[str, ...]], owners: dict[str, str]):
        ex = cfg.get("explained_away") or {}
        self.findings = frozenset(ex.get("findings") or [])
        self.labels = self.findings | {f"sug:{f}" for f in self.findings}
        self.explainers = frozenset(str(p).lower() for p in ex.get("explainers") or [])
        self.links = frozenset(str(w).lower() for w in ex.get("links") or [])
        self.weak = frozenset(str(w).lower() for w in ex.get("weak_links") or [])
        self.reverse = frozenset(str(w).lower() for w in ex.get("reverse_links") or [])
        self.window = int(ex.get("window", 10))
        self.implications = implications
        self.implying = frozenset(owners.get(p) for p in implications) - {None}

    def implied(self, ent: Span, finding: str) -> tuple[str, ...]:
        """Findings that a mention's phrase also asserts ("hydropneumothorax" → pleural_effusion)."""
        if finding not in self.implying:
            return ()
        return self.implications.get(ent.text.lower(), ())

    def explained(self, m: Mention, finding: str) -> Mention | None:
        """The mention, unless its own sentence explains it away (None), or as uncertain if only perhaps."""
        if finding not in self.findings or m.value == 0:
            return m
        doc = m.ent.doc
        start, end = sentence_bounds(doc, m.ent.start)
        for e in all_entities(doc):
            if e.start < start or e.start >= end or e.text.lower() not in self.explainers:
                continue
            if e.start >= m.ent.end:
                link = "strong" if _apposition(doc, e.start) and e.start - m.ent.end <= self.window else \
                    self._link(doc[m.ent.end:e.start], self.links)
            elif e.end <= m.ent.start:
                link = self._link(doc[e.end:m.ent.start], self.reverse, require=True)
            else:
                continue
            if link == "weak":
                return Mention(-1, "uncertain", m.ent, e.text, "explained.perhaps", "possible")
            if link == "strong":
                return None
        return m

    def _link(self, between: Span, links: frozenset[str], require: bool = False) -> str | None:
        """"strong", "weak" or None: how the words between a mention and its explainer tie them."""
        if len(between) > self.window or any(t.ent_iob_ == "B" and t.ent_type_ in self.labels for t in between):
            return None  # another lesion or opacity in between: the explainer is not this mention's
        words = [t.lower_ for t in between]
        if any(w in _BREAKS for w in words):
            return None
        if any(w in self.weak for w in words):
            return "weak"
        last = max((k for k, w in enumerate(words) if w in links), default=None)
        if last is None:
            text = f" {' '.join(words)} "
            last = max((text[:text.index(f" {p} ")].count(" ") + p.count(" ") for p in links
                        if " " in p and f" {p} " in text), default=None)
        if last is not None:  # the link must lead to the explainer ("is a nipple", not "is obscured by the clavicle")
            tail = words[last + 1:]
            return "strong" if len(tail) <= 3 and not _BLOCKERS.intersection(tail) else None
        if not require and all(t.is_punct or t.lower_ in ("a", "an", "the") for t in between):
            return "strong"  # "nodular opacity (nipple shadow)", "density, a nipple shadow"
        return None


def _apposition(doc: Doc, start: int) -> bool:
    """Is the explainer set off right after a comma, bracket or dash ("..., a nipple shadow", "(nipple shadow)")?"""
    before = [t.lower_ for t in doc[max(0, start - 2):start]]
    return bool(before) and (
        before[-1] in ("(", "-", "–", ":")
        or before[-2:] in ([",", "a"], [",", "an"], [",", "the"])
        or (before[-1] == "," and len(before) == 1)
    )
