"""Errors that carry their CLI exit code, so every stage fails the same way (DESIGN §4)."""
from __future__ import annotations


class RadsimError(Exception):
    """A run failed (exit code 1). The message is one line a user can act on."""

    exit_code = 1


class UsageError(RadsimError):
    """Bad arguments, unreadable configuration or an input that breaks its contract (exit code 2)."""

    exit_code = 2


class ContractViolation(UsageError):
    """A table does not satisfy its data contract.

    The message names the table, the column, the rule and up to five offending keys.
    """

    def __init__(self, table: str, column: str | None, rule: str, detail: str, keys: list[str] | None = None):
        self.table, self.column, self.rule, self.detail = table, column, rule, detail
        self.keys = list(keys or [])[:5]
        where = f"table '{table}'" + (f", column '{column}'" if column else "")
        msg = f"{where} violates rule '{rule}': {detail}"
        if self.keys:
            msg += f" (keys: {', '.join(self.keys)})"
        super().__init__(msg)


class MissingKeyError(UsageError):
    """A non-demo run has no pseudonymisation key."""


class ReconciliationError(RadsimError):
    """A stage's counts do not add up: a record vanished or was counted twice."""


class QuarantineCeilingExceeded(RadsimError):
    """A stage refused more of its input than the ceiling allows: a broken install or feed, not bad records."""


class UnexpectedStageError(RadsimError):
    """An error that is not bad input (a bug, a broken codec install): the batch fails, nothing is quarantined."""
