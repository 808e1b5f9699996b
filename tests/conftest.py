"""Shared fixtures."""

from __future__ import annotations

import asyncio
import threading
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
