"""Shared fixtures."""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import Callable, Iterator

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


class ManualClock(FakeClock):
    """A FakeClock whose sleeps wait for ``advance()``: the test moves time, sleeping does not."""

    async def sleep(self, seconds: float) -> None:
        """Wait until virtual time has advanced *seconds* (someone else must advance it)."""
        self.sleeps.append(seconds)
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not woken.done():
                woken.set_result(None)

        handle = self.call_later(seconds, lambda: loop.call_soon_threadsafe(wake))
        try:
            await woken
        finally:
            handle.cancel()

    def sleep_blocking(self, seconds: float) -> None:
        """Block until another thread advances virtual time by *seconds* (30 s real guard)."""
        self.sleeps.append(seconds)
        woken = threading.Event()
        handle = self.call_later(seconds, woken.set)
        try:
            assert woken.wait(30), "nobody advanced the clock"
        finally:
            handle.cancel()


@pytest.fixture
def manual_clock() -> FakeClock:
    """A virtual clock that only ``advance()`` moves (sleeping on it waits)."""
    return ManualClock()


# --- uvloop: the toolkit's async tests run on it as well ----------------------------------------

# The modules of the policies and helpers that juggle tasks, futures, timers and
# loops of their own (issue 12): each of their async tests runs on asyncio's
# loop and on uvloop's, whose callbacks, handles and task steps differ.
ON_UVLOOP = frozenset(
    {
        "test_rate_limiter.py",
        "test_rate_limiter_cancellation.py",
        "test_hedge.py",
        "test_chaos.py",
        "test_outcome.py",
        "test_gate.py",
        "test_registry.py",
        "test_http.py",
        "test_contract_outcomes_http.py",
        "test_hedge_chaos_adapters.py",
        "test_rate_limiter_adapters.py",
        "test_toolkit_under_stress.py",
    }
)
HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None  # not on Windows


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The event loops an async test runs on: asyncio's, plus uvloop's for the toolkit's modules."""
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"asyncio": asyncio.new_event_loop}
    if HAVE_UVLOOP and item.path.name in ON_UVLOOP:
        import uvloop

        factories["uvloop"] = uvloop.new_event_loop
    return factories
