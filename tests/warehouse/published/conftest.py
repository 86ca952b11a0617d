"""Published tables written without torch: the store is pure pyarrow."""
from __future__ import annotations

from collections.abc import Callable

import pytest

from radsim.warehouse import published as P

D = 8  # the dimension of publish_synthetic (tests/conftest.py)


@pytest.fixture
def publish(publish_synthetic) -> Callable[..., P.PublishResult]:
    return publish_synthetic
