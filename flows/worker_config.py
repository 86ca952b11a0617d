"""`radsim worker`'s settings, declared once (its command-line options derive from them).

Prefect-free, so `radsim worker --help` stays fast.
"""
from __future__ import annotations

from pydantic import Field

from radsim.data_contracts.settings import Settings


class WorkerConfig(Settings):
    """How `radsim worker` polls its work pool and how it stops (DESIGN §11)."""

    pool: str = Field("radsim-process", min_length=1, description="the process work pool to poll (created when "
                      "missing)")
    name: str | None = Field(None, description="the worker's name in the Prefect UI (none: Prefect makes one up)")
    limit: int = Field(1, ge=1, description="flow runs at once; 1 keeps one run per warehouse, as the deployments' "
                       "concurrency limit does")
    drain_seconds: float = Field(60.0, ge=0, description="after SIGTERM or Ctrl-C, how long the run in flight may "
                                 "go on to finish; then it is cancelled (CANCELLED, and the next run redoes it)")
    cancel_seconds: float = Field(60.0, gt=0, description="how long a cancelled run may take to stop and be marked "
                                  "CANCELLED before the worker stops it by force (the run is then marked CRASHED)")

    @property
    def stop_seconds(self) -> float:
        """The longest a stop can take: a supervisor's stop timeout must be longer (systemd TimeoutStopSec...)."""
        return self.drain_seconds + self.cancel_seconds
