"""`in_order`: results in input order, never more than `window` jobs submitted and unconsumed."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from radsim.data_contracts.inflight import in_order


class _Future:
    def __init__(self, value, ledger):
        self.value, self.ledger, self.cancelled = value, ledger, False
        ledger.append(self)

    def result(self):
        return self.value * 10

    def cancel(self):
        self.cancelled = True


def test_results_come_in_input_order_even_when_later_jobs_finish_first():
    with ThreadPoolExecutor(4) as pool:
        def submit(i):
            return pool.submit(lambda: (time.sleep(0.02 * (5 - i)), i)[1])

        assert [r for _, r in in_order(range(5), submit, window=4)] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("window", [1, 2, 3])
def test_at_most_window_jobs_are_in_flight(window):
    submitted: list[_Future] = []
    consumed = 0
    for item, result in in_order(range(7), lambda i: _Future(i, submitted), window):
        assert result == item * 10
        consumed += 1
        # the oldest result is in and the next job submitted before the pair is handed on
        assert len(submitted) - consumed <= window
    assert consumed == 7 and len(submitted) == 7


def test_pending_jobs_are_cancelled_when_the_caller_stops_early():
    submitted: list[_Future] = []
    pairs = in_order(range(10), lambda i: _Future(i, submitted), 3, cancel_pending=True)
    next(pairs)
    pairs.close()
    assert [f.value for f in submitted if f.cancelled] == [1, 2, 3]
    assert not submitted[0].cancelled
