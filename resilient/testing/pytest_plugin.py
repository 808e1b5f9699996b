"""pytest fixtures for testing code that uses ``resilient``.

Installed as the ``resilient`` pytest plugin (a ``pytest11`` entry point),
so the fixtures are there in every test suite once the package is
installed; nothing runs unless a test asks for them:

- ``resilient_reset`` — reset every breaker, bulkhead and retry budget
  (:func:`~resilient.testing.reset_policies`) before and after the test.
  Set ``resilient_autoreset = true`` in pytest's configuration to use it
  in every test.
- ``resilient_clock`` — a :class:`~resilient.testing.FakeClock` that every
  policy built without ``clock=`` uses during the test
  (:func:`~resilient.testing.use_clock`); state is reset around it, as the
  time base changes.
- ``resilient_testing`` — test mode on during the test
  (:func:`~resilient.set_testing`): retry never waits.

``resilient`` itself is imported by the first fixture used, not when pytest
loads the plugin.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from resilient.testing import FakeClock

__all__ = ["resilient_clock", "resilient_reset", "resilient_testing"]

_AUTORESET = "resilient_autoreset"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ``resilient_autoreset`` ini option."""
    parser.addini(
        _AUTORESET,
        type="bool",
        default=False,
        help="reset every resilient breaker, bulkhead and retry budget around each test",
    )


@pytest.fixture
def resilient_reset() -> Iterator[None]:
    """Reset every breaker, bulkhead and retry budget before and after the test."""
    from resilient.testing import reset_policies

    reset_policies()
    yield
    reset_policies()


@pytest.fixture(autouse=True)
def _resilient_autoreset(request: pytest.FixtureRequest) -> None:
    """Use ``resilient_reset`` in every test when the ini option says so."""
    if request.config.getini(_AUTORESET):
        request.getfixturevalue("resilient_reset")


@pytest.fixture
def resilient_clock(resilient_reset: None) -> Iterator[FakeClock]:
    """A FakeClock used by every policy built without ``clock=`` during the test."""
    from resilient.testing import FakeClock, use_clock

    clock = FakeClock()
    with use_clock(clock):
        yield clock


@pytest.fixture
def resilient_testing() -> Iterator[None]:
    """Test mode (no retry waits) during the test."""
    from resilient import set_testing

    with set_testing(True):
        yield
