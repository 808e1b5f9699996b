"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from resilient.events import default_bus
from resilient.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    """A fresh virtual clock."""
    return FakeClock()


@pytest.fixture(autouse=True)
def _clean_default_bus() -> Iterator[None]:
    """Every test starts and ends with no subscriber on the default bus."""
    default_bus.clear()
    yield
    default_bus.clear()
