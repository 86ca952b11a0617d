"""The four verdicts of an evaluation record (the evaluation contract's allowed values, DESIGN §9).

Declared here, below every stage, because the evaluation writes them and the promotion gates
read them from model cards.
"""
from __future__ import annotations

ABOVE, BELOW, NOT_DISTINGUISHABLE, TOO_FEW = "above chance", "below chance", "not distinguishable", "too few to judge"
VERDICTS = (ABOVE, BELOW, NOT_DISTINGUISHABLE, TOO_FEW)
