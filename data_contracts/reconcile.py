"""Counts reconcile at every stage: rows in = rows out + quarantined + skipped (DESIGN §12)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from .errors import ReconciliationError


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

    def check(self) -> "StageCounts":
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
