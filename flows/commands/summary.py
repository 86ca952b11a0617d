"""The end-of-run lines `radsim run` and `radsim demo` print: stage counts, then the run's notes."""
from __future__ import annotations

from typing import Any


def print_counts_and_notes(result: Any, heading: str) -> None:
    """`heading`, each stage's `in = out + quarantined + skipped` line, then every note, indented."""
    print(heading)
    for counts in result.counts:
        print(f"  {counts.summary()}")
    for line in result.notes:
        print(f"  {line}")
