"""The radiology data files shipped with radsim.nlp, loaded fresh (deep copies) on every call.

negspacy's `termset(...).add_patterns` mutates module-level defaults shared by every pipeline in
the process (DESIGN §6); we never touch them: each build gets its own lists from our YAML.
"""
from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

from .certainty import Lexicon

NEGEX_KEYS = ("pseudo_negations", "preceding_negations", "following_negations", "termination")
KINDS = ("negation", "uncertainty", "resolved")


@cache
def _load(name: str) -> Any:
    return yaml.safe_load(resources.files(__package__).joinpath(name).read_text(encoding="utf-8"))


def expand_slots(template: list[list[str]]) -> list[str]:
    """Every phrase a slot template makes: one alternative per slot, "" for an empty slot."""
    return [
        " ".join(w for w in combo if w) for combo in itertools.product(*[[str(a) for a in slot] for slot in template])
    ]


def _expanded(raw: dict[str, Any], key: str) -> list[str]:
    """A termset list with its slot templates ("templates": {KEY: [[slot], ...]}) expanded."""
    out = [str(t) for t in raw.get(key) or []]
    for template in (raw.get("templates") or {}).get(key) or []:
        out += expand_slots(template)
    return out


def termsets() -> dict[str, dict[str, list[str]]]:
    """{kind: negspacy termset dict} for negation, uncertainty and resolved; a deep copy.

    The historical and hypothetical triggers join the resolved instance (one negex pass fewer); the
    labeler tells them apart by trigger (`historical()`, `hypothetical()`). Templates are expanded here.
    """
    raw = copy.deepcopy(_load("termsets.yaml"))
    shared = [str(t) for t in raw.get("shared_termination", [])]
    templates = raw.get("pseudo_templates") or {}
    out: dict[str, dict[str, list[str]]] = {}
    for kind in KINDS:
        ts = {key: _expanded(raw[kind], key) for key in NEGEX_KEYS}
        if kind == "resolved":
            for extra in ("historical", "hypothetical"):
                for key in ("preceding_negations", "following_negations"):
                    ts[key] += _expanded(raw.get(extra, {}), key)
            ts["preceding_negations"] += [str(t) for t in raw.get("historical", {}).get("short_reach") or []]
        for template in templates.get(kind) or []:
            ts["pseudo_negations"] += expand_slots(template)
        ts["termination"] = list(dict.fromkeys(shared + ts["termination"]))
        out[kind] = {key: list(dict.fromkeys(terms)) for key, terms in ts.items()}
    return out


@dataclass(frozen=True)
class Historical:
    """How historical mentions are told apart ("History of pneumonia.", "Previous pneumonia.")."""

    triggers: frozenset[str]  # lower-cased; every one of them marks a mention historical
    short_reach: frozenset[str]  # "previous", "prior": reach only nearby mentions of transient findings
    short_reach_gap: int
    short_reach_findings: frozenset[str]
    persistence: frozenset[str]  # a word in the mention's own clause that says it is still there
    study_words: frozenset[str] = frozenset()  # a trigger holding one refers to another study ("prior CT showed")
    changed_before: frozenset[str] = frozenset()  # before such a mention: it is described now ("interval decrease in")

    def is_historical(self, trigger: str) -> bool:
        low = trigger.lower()
        return low in self.triggers or not self.study_words.isdisjoint(low.replace("-", " ").split())


def historical() -> Historical:
    raw = _load("termsets.yaml").get("historical", {})
    short = frozenset(str(t).lower() for t in raw.get("short_reach") or [])
    lists = [_expanded(raw, key) for key in ("preceding_negations", "following_negations")]
    return Historical(
        triggers=frozenset(str(t).lower() for terms in lists for t in terms) | short,
        short_reach=short,
        short_reach_gap=int(raw.get("short_reach_gap", 3)),
        short_reach_findings=frozenset(raw.get("short_reach_findings") or []),
        persistence=frozenset(str(t).lower() for t in raw.get("persistence") or []),
        study_words=frozenset(str(t).lower() for t in (raw.get("study_reference") or {}).get("studies") or []),
        changed_before=frozenset(str(t).lower() for t in raw.get("changed_before") or []),
    )


def study_reference_words() -> dict[str, list[str]]:
    """The word lists of the triggers that attribute a finding to another study (radsim.nlp.study_refs)."""
    ref = _load("termsets.yaml").get("historical", {}).get("study_reference") or {}
    return {key: [str(w) for w in words] for key, words in ref.items()}


def historical_following() -> list[str]:
    """Historical triggers that follow their mention and reach only the mention right before it ("follow-up")."""
    return [str(t) for t in _load("termsets.yaml").get("historical", {}).get("following_negations") or []]


@cache
def hypothetical() -> frozenset[str]:
    """Lower-cased triggers of hypothetical, advisory or limitation wording: a mention they govern is no mention."""
    raw = _load("termsets.yaml").get("hypothetical", {})
    return frozenset(t.lower() for key in ("preceding_negations", "following_negations") for t in _expanded(raw, key))


@cache
def certainty_lexicon() -> Lexicon:
    """The graded certainty phrases (termsets.yaml `certainty`)."""
    return Lexicon({grade: [str(p) for p in phrases] for grade, phrases in _load("termsets.yaml")["certainty"].items()})


def unlikely_triggers() -> frozenset[str]:
    """Negation triggers that grade a mention "unlikely" (< 10%) rather than absent."""
    return frozenset(str(t).lower() for t in _load("termsets.yaml")["certainty"].get("unlikely") or [])


def phrases() -> dict[str, Any]:
    """Ignore phrases, attribute phrases, spelling pairs and typo settings; a deep copy."""
    return copy.deepcopy(_load("phrases.yaml"))
