"""At most N jobs in flight, results in input order: the one loop behind every parallel stage.

Labelling chunks, decoding shard batches and embedding shard groups all submit work to an
executor (a process pool, a Prefect task runner, Dask) and must hand results on in input order
with bounded memory. `submit` returns anything with `.result()`.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any, TypeVar

Item = TypeVar("Item")
_END = object()


def in_order(items: Iterable[Item], submit: Callable[[Item], Any], window: int, *,
             cancel_pending: bool = False) -> Iterator[tuple[Item, Any]]:
    """(item, result) pairs in input order, with at most `window` submitted and not yet consumed.

    The next item is submitted as soon as the oldest result is in, before it is yielded, so the
    executor stays busy while the caller works. With `cancel_pending`, futures still pending when
    the caller stops early (an error, a closed generator) are cancelled.
    """
    source = iter(items)
    pending: deque[tuple[Item, Any]] = deque((item, submit(item)) for item in islice(source, max(1, window)))
    try:
        while pending:
            item, future = pending.popleft()
            result = future.result()
            following = next(source, _END)
            if following is not _END:
                pending.append((following, submit(following)))  # type: ignore[arg-type]
            yield item, result
    finally:
        if cancel_pending:
            for _, future in pending:
                future.cancel()
