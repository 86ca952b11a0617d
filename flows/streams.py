"""Standard streams that go quiet when their reader has gone, instead of failing the work.

`radsim label ... | head -1` closes stdout early; a Prefect worker stopped while its flow-run
process goes on closes both of that process's pipes. The work and its files are what matter:
a line nobody can read is not a failure, and Python's own flush at exit must not turn it into
one either (it would exit 120 after a complete run).
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any, TextIO


class ClosedPipeSafe:
    """A text stream that drops what it is given once its reader has gone (EPIPE)."""

    def __init__(self, stream: TextIO):
        self._stream = stream
        self._closed = False

    def write(self, text: str) -> int:
        if not self._closed:
            try:
                return self._stream.write(text)
            except (BrokenPipeError, ValueError):  # ValueError: the stream itself was closed
                self._go_quiet()
        return len(text)

    def flush(self) -> None:
        if not self._closed:
            try:
                self._stream.flush()
            except (BrokenPipeError, ValueError):
                self._go_quiet()

    def _go_quiet(self) -> None:
        self._closed = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._stream.fileno())  # other writers on this descriptor, and the exit flush, succeed
        except (OSError, ValueError):
            pass
        finally:
            os.close(devnull)

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)


def _rich_consoles() -> list[Any]:
    """The rich Consoles of the logging handlers (Prefect's console handler prints through one)."""
    loggers = [logging.getLogger(), *(v for v in logging.Logger.manager.loggerDict.values()
                                      if isinstance(v, logging.Logger))]
    consoles = [getattr(h, "console", None) for lg in loggers for h in lg.handlers]
    return list({id(c): c for c in consoles if c is not None and hasattr(c, "file")}.values())


@contextlib.contextmanager
def closed_pipe_safe() -> Iterator[None]:
    """sys.stdout, sys.stderr and the logging consoles closed-pipe safe for the duration.

    A rich Console (Prefect's console log handler) answers a broken pipe with SystemExit(1)
    (rich.console.Console.on_broken_pipe): inside a flow run that is a CRASHED run, even after
    all its work is written. Wrapped, its writes to a gone reader are dropped instead.
    """
    saved = sys.stdout, sys.stderr
    consoles = [(c, c.file) for c in _rich_consoles() if not isinstance(c.file, ClosedPipeSafe)]
    if not isinstance(sys.stdout, ClosedPipeSafe):
        sys.stdout = ClosedPipeSafe(sys.stdout)  # type: ignore[assignment]
    if not isinstance(sys.stderr, ClosedPipeSafe):
        sys.stderr = ClosedPipeSafe(sys.stderr)  # type: ignore[assignment]
    for console, stream in consoles:
        console.file = ClosedPipeSafe(stream)
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        sys.stdout, sys.stderr = saved
        for console, stream in consoles:
            console.file = stream
