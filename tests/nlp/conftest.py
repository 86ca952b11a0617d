"""Fixtures for the nlp tests: one labeler per session (building it takes about a second)."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def labeler():
    from radsim.nlp.labeler import build_labeler

    return build_labeler()
