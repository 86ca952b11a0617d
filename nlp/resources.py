"""The radiology data files shipped with radsim.nlp, loaded fresh (deep copies) on every call.

negspacy's `termset(...).add_patterns` mutates module-level defaults shared by every pipeline in
the process (DESIGN §6); we never touch them: each build gets its own lists from our YAML.
"""
from __future__ import annotations

import copy
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

NEGEX_KEYS = ("pseudo_negations", "preceding_negations", "following_negations", "termination")
KINDS = ("negation", "uncertainty", "resolved")


@lru_cache(maxsize=None)
def _load(name: str) -> Any:
    return yaml.safe_load(resources.files(__package__).joinpath(name).read_text(encoding="utf-8"))


def termsets() -> dict[str, dict[str, list[str]]]:
    """{kind: negspacy termset dict} for negation, uncertainty and resolved; a deep copy."""
    raw = copy.deepcopy(_load("termsets.yaml"))
    shared = [str(t) for t in raw.get("shared_termination", [])]
    out: dict[str, dict[str, list[str]]] = {}
    for kind in KINDS:
        ts = {key: [str(t) for t in raw[kind].get(key) or []] for key in NEGEX_KEYS}
        ts["termination"] = list(dict.fromkeys(shared + ts["termination"]))
        out[kind] = ts
    return out


def phrases() -> dict[str, Any]:
    """Ignore phrases, attribute phrases, spelling pairs and typo settings; a deep copy."""
    return copy.deepcopy(_load("phrases.yaml"))
