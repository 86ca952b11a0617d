"""Counts reconcile at every stage: rows in = rows out + quarantined + skipped (DESIGN §12)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from .errors import QuarantineCeilingExceeded, ReconciliationError


@dataclass
class StageCounts:
    stage: str
    rows_in: int = 0
    rows_out: int = 0
    quarantined: int = 0
    skipped: int = 0

    @property
    def balanced(self) -> bool:
        return self.rows_in == self.rows_out + self.quarantined + self.skipped

    def check(self) -> StageCounts:
        """Raise if a record vanished or was counted twice; return self to allow chaining."""
        if not self.balanced:
            raise ReconciliationError(
                f"stage '{self.stage}' does not reconcile: in={self.rows_in} but "
                f"out={self.rows_out} + quarantined={self.quarantined} + skipped={self.skipped} "
                f"= {self.rows_out + self.quarantined + self.skipped}"
            )
        return self

    def summary(self) -> str:
        return (
            f"{self.stage}: {self.rows_in} in = {self.rows_out} out + {self.quarantined} quarantined "
            f"+ {self.skipped} skipped" + ("" if self.balanced else "  ** DOES NOT RECONCILE **")
        )

    def as_dict(self) -> dict[str, int | str]:
        return asdict(self)


@dataclass(frozen=True)
class QuarantineCeiling:
    """How much of a run's input a stage may refuse before the run fails (DESIGN §12).

    A few bad records are expected and quarantined; refusing most of a night's input means a broken
    codec install, a changed feed or a bug, and must fail loudly rather than report success.
    """

    max_fraction: float = 0.2  # of the records the stage worked on (in - skipped)
    min_count: int = 10  # fewer refusals than this never fail a run, whatever the fraction

    def check(self, counts: StageCounts, reasons: dict[str, int] | None = None) -> StageCounts:
        attempted = counts.rows_in - counts.skipped
        if counts.quarantined >= self.min_count and counts.quarantined > self.max_fraction * attempted:
            shown = ", ".join(f"{k}={v}" for k, v in sorted((reasons or {}).items())) or "see the quarantine table"
            raise QuarantineCeilingExceeded(
                f"stage '{counts.stage}' quarantined {counts.quarantined} of {attempted} records "
                f"({counts.quarantined / max(1, attempted):.0%}), above the ceiling of {self.max_fraction:.0%} "
                f"(quarantine.max_fraction): {shown}. Nothing is marked done; fix the cause and rerun")
        return counts
