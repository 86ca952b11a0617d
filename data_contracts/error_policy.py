"""What a stage does with an error raised by one record: refuse the record, or fail the run (DESIGN §12).

The idea is webdataset's `handler=`: the policy is a parameter of the stage, one named and
tested piece, not a scattered `except`. A stage has a single per-record `except` that asks
`policy.judge(exc)`: a `Refusal` means bad input (the record becomes a quarantine row with that
reason and the run goes on); `None` means the error is not the input's fault (a bug, a broken
codec install) and the stage fails loudly, naming it. Nothing unexpected is ever quarantined.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Refusal:
    """A record refused as bad input: the quarantine row's reason code and message."""

    reason_code: str
    message: str


@dataclass(frozen=True)
class ErrorPolicy:
    """Ordered rules (exception type → its refusal); an error no rule matches fails the stage.

    Rules are module-level functions, so a policy pickles into worker processes.
    """

    name: str
    rules: tuple[tuple[type[BaseException], Callable[[BaseException], Refusal]], ...] = ()

    def judge(self, exc: BaseException) -> Refusal | None:
        for kind, refuse in self.rules:
            if isinstance(exc, kind):
                return refuse(exc)
        return None


STRICT = ErrorPolicy("strict")  # every error fails the stage: for a site that wants to see each one
