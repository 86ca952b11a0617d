"""Delimited text (CSV, TSV, ';'-separated) as records, where a malformed record is reported, never merged.

Python's csv module, lenient by default, lets a field that opens a quote and never closes it swallow
every line after it: records vanish or merge into the one before, and the file still "parses". Here
each record's physical lines are found by a quote-state scan (only quote and delimiter positions are
visited, so it is fast), and each record is then parsed strictly. A record that cannot be parsed (a
quote that closes a field with text after it, as when a stray quote is closed by the next record's
opening quote; a quoted field still open at the end of the file) is yielded as a problem naming its
first line, and reading resumes at the line after that one: the lines the stray quote swallowed are
read again, so every other record is read, and any leftover line of the bad record is reported too.
"""
from __future__ import annotations

import csv
import re
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TextIO

QUOTE = '"'


@dataclass(frozen=True)
class RawRecord:
    line: int  # physical line (1-based) where the record starts
    fields: list[str] | None  # None when malformed
    problem: str | None = None  # why the record could not be parsed


class _Lines:
    """Physical lines with their numbers, and a way to read some of them again."""

    def __init__(self, fh: TextIO):
        self._source = enumerate(fh, start=1)
        self._again: deque[tuple[int, str]] = deque()

    def next(self) -> tuple[int, str] | None:
        if self._again:
            return self._again.popleft()
        return next(self._source, None)

    def push_back(self, lines: Iterable[tuple[int, str]]) -> None:
        self._again.extendleft(reversed(list(lines)))


class _Scanner:
    """Quote state across the physical lines of one record (RFC 4180: a quote doubles to escape)."""

    def __init__(self, delimiter: str):
        self.special = re.compile(f"[{re.escape(QUOTE + delimiter)}]")
        self.delimiter = delimiter

    def scan(self, text: str, in_quotes: bool, field_start: bool) -> tuple[bool, bool, bool]:
        """(in_quotes, field_start, broken) at the end of `text`, one physical line with its line end.

        `broken`: a quote closed a quoted field and something other than a delimiter or the line end
        follows it.
        """
        pos, n = 0, len(text)
        while pos < n:
            if in_quotes:
                q = text.find(QUOTE, pos)
                if q < 0:
                    return True, False, False
                if q + 1 < n and text[q + 1] == QUOTE:
                    pos = q + 2
                    continue
                after = text[q + 1:q + 2]
                if after not in ("", self.delimiter, "\n", "\r"):
                    return False, False, True
                in_quotes, pos = False, q + 1
                continue
            m = self.special.search(text, pos)
            if m is None:
                return False, False, False
            if m.group() == self.delimiter:
                field_start, pos = True, m.end()
                continue
            # a quote: it opens a quoted field only at the start of a field (elsewhere it is a character)
            in_quotes = field_start and m.start() == pos
            field_start, pos = False, m.end()
        return in_quotes, field_start, False


def records(fh: TextIO, delimiter: str) -> Iterator[RawRecord]:
    """Every record of a delimited text stream, header included, in order; blank lines are skipped."""
    lines = _Lines(fh)
    scanner = _Scanner(delimiter)
    while True:
        first = lines.next()
        if first is None:
            return
        if not first[1].strip("\r\n"):
            continue
        taken = [first]
        in_quotes, field_start, broken = scanner.scan(first[1], False, True)
        while in_quotes and not broken:
            nxt = lines.next()
            if nxt is None:
                break
            taken.append(nxt)
            in_quotes, field_start, broken = scanner.scan(nxt[1], True, False)
        if broken or in_quotes:  # only the first line is the bad record: the lines it swallowed are read again
            lines.push_back(taken[1:])
            if broken and len(taken) > 1:
                problem = (f"a quoted field opens here and is not closed before line {taken[-1][0]}, where a quote "
                           "is followed by text")
            elif broken:
                problem = "a quote inside a quoted field is not doubled (write \"\" for a quote in a field)"
            else:
                problem = "a quoted field opens here and is never closed (it runs to the end of the file)"
            yield RawRecord(first[0], None, problem)
            continue
        yield _parse(first[0], [text for _, text in taken], delimiter)


def _parse(line: int, texts: list[str], delimiter: str) -> RawRecord:
    try:
        fields = next(csv.reader(texts, delimiter=delimiter, strict=True), [])
    except csv.Error as exc:
        return RawRecord(line, None, f"cannot be parsed: {exc}")
    return RawRecord(line, fields)
