"""A value with its 95% interval: one shape for the evaluation's intervals and the site audit's.

Declared below both stages (radsim.evaluation ranks above radsim.nlp), so each computes its own
interval and writes its own report, but the value they hand around is the same.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float
    exact: bool = False  # a census: every item it rests on was counted, so no sampling interval

    @property
    def defined(self) -> bool:
        return all(math.isfinite(x) for x in (self.value, self.low, self.high))

    def text(self, spec: str = ".3f") -> str:
        """'0.812 [0.774, 0.851]', '0.833 (exact)', the value alone without bounds, or 'n/a'."""
        if not math.isfinite(self.value):
            return "n/a"
        if self.exact:
            return f"{self.value:{spec}} (exact)"
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return format(self.value, spec)
        return f"{self.value:{spec}} [{self.low:{spec}}, {self.high:{spec}}]"

    def as_dict(self, digits: int | None = None) -> dict[str, float | bool | None]:
        """{"value", "low", "high"} (not finite: None; rounded to `digits` when given); "exact": True for a census."""
        out: dict[str, float | bool | None] = {
            k: (None if not math.isfinite(v) else (round(v, digits) if digits is not None else float(v)))
            for k, v in (("value", self.value), ("low", self.low), ("high", self.high))}
        if self.exact:
            out["exact"] = True
        return out
