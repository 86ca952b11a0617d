"""Offline defaults for Prefect, applied before prefect is first imported (DESIGN §11, §13).

Prefect runs in its ephemeral local mode unless the user points PREFECT_API_URL at a server.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

OFFLINE_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_LOGGING_LEVEL": "WARNING",
}


def configure_prefect(home: str | Path | None = None) -> None:
    """Set the offline defaults (without overriding what the user set) and a PREFECT_HOME.

    An empty PREFECT_API_URL is not the same as an unset one: it is removed.
    """
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)
    if os.environ.get("PREFECT_API_URL", None) == "":
        del os.environ["PREFECT_API_URL"]
    if "PREFECT_HOME" not in os.environ:
        base = Path(home) if home else Path(tempfile.gettempdir()) / f"radsim-prefect-{os.getuid()}"
        base.mkdir(parents=True, exist_ok=True)
        os.environ["PREFECT_HOME"] = str(base)
