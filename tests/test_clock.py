"""Clocks: the system clock follows time.monotonic (and freezegun); any Clock is accepted."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from freezegun import freeze_time

import resilient
from resilient import Clock, SystemClock, fallback, pipeline, retry, timeout
from resilient._clock import SYSTEM_CLOCK, blocking_sleep, call_later
from resilient.events import CallFailed, RetriesExhausted, RetryScheduled
from resilient.testing import FakeClock, capture_events


class MinimalClock:
    """A clock with only the two required methods."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_system_clock_reads_time_monotonic_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """SystemClock.monotonic looks time.monotonic up on each call, so patching it moves the clock."""
    clock = SystemClock()
    monkeypatch.setattr(time, "monotonic", lambda: 1234.5)
    assert clock.monotonic() == 1234.5


def test_system_clock_follows_freezegun() -> None:
    """Under freezegun (real_asyncio=True) the system clock moves with tick()."""
    with freeze_time("2024-01-01", real_asyncio=True) as frozen:
        before = SYSTEM_CLOCK.monotonic()
        frozen.tick(30)
        assert SYSTEM_CLOCK.monotonic() - before == 30


def test_retry_deadline_follows_freezegun() -> None:
    """retry's deadline is measured on the system clock, so freezegun's time decides it."""
    calls = 0

    with freeze_time("2024-01-01", real_asyncio=True) as frozen:

        @retry(attempts=5, deadline=5, backoff=0.001)
        def slow() -> None:
            nonlocal calls
            calls += 1
            frozen.tick(10)
            raise ConnectionError

        with capture_events(RetriesExhausted) as events, pytest.raises(ConnectionError):
            slow()
    assert (calls, [e.reason for e in events]) == (1, ["deadline"])  # type: ignore[attr-defined]


def test_event_time_follows_freezegun() -> None:
    """Event times and call durations come from the system clock, which freezegun moves."""
    with freeze_time("2024-01-01", real_asyncio=True) as frozen:
        start = SYSTEM_CLOCK.monotonic()

        @retry(attempts=1)
        def slow() -> None:
            frozen.tick(7)
            raise KeyError

        with capture_events(CallFailed) as events, pytest.raises(KeyError):
            slow()
    [event] = events
    assert (event.time - start, event.duration) == (7, 7)  # type: ignore[attr-defined]


async def test_async_retry_under_freezegun() -> None:
    """Async code runs under freezegun with real_asyncio=True, and event times follow it."""
    with freeze_time("2024-01-01", real_asyncio=True) as frozen, resilient.set_testing(True):
        start = SYSTEM_CLOCK.monotonic()
        calls = 0

        @retry(attempts=2, backoff=0.5)
        async def flaky() -> str:
            nonlocal calls
            calls += 1
            frozen.tick(2)
            if calls == 1:
                raise ConnectionError
            return "ok"

        with capture_events(RetryScheduled) as events:
            assert await flaky() == "ok"
    assert [e.time - start for e in events] == [2]


async def test_system_clock_sleep_zero() -> None:
    """SystemClock.sleep(0) yields to the loop and returns."""
    assert await SystemClock().sleep(0) is None  # type: ignore[func-returns-value]


def test_system_clock_sleep_blocking_zero() -> None:
    """SystemClock.sleep_blocking(0) returns at once."""
    assert SystemClock().sleep_blocking(0) is None  # type: ignore[func-returns-value]


async def test_system_clock_call_later_uses_loop() -> None:
    """SystemClock.call_later schedules on the running loop and can be cancelled."""
    fired: list[str] = []
    loop_done = asyncio.get_running_loop().create_future()
    handle = SystemClock().call_later(0, lambda: fired.append("a"))
    cancelled = SystemClock().call_later(0, lambda: fired.append("b"))
    cancelled.cancel()
    asyncio.get_running_loop().call_soon(loop_done.set_result, None)
    await loop_done
    await asyncio.sleep(0)
    assert (fired, hasattr(handle, "cancel")) == (["a"], True)


def test_system_clock_repr() -> None:
    """The system clock's repr is readable."""
    assert repr(SystemClock()) == "SystemClock()"


@pytest.mark.parametrize("clock", [SystemClock(), FakeClock(), MinimalClock()], ids=type)
def test_clock_protocol(clock: Any) -> None:
    """The system clock, FakeClock and a minimal user clock all satisfy the Clock protocol."""
    assert isinstance(clock, Clock)


def test_policies_accept_any_clock() -> None:
    """Every policy (and pipeline) accepts a user clock with only monotonic() and sleep()."""
    clock = MinimalClock()
    made: list[Any] = [retry(clock=clock), timeout(1, clock=clock), fallback(None, clock=clock)]
    made.append(pipeline(clock=clock))
    breaker = getattr(resilient, "circuit_breaker", None)
    if breaker is not None:
        made.append(breaker(clock=clock))
    bulkhead = getattr(resilient, "bulkhead", None)
    if bulkhead is not None:
        made.append(bulkhead(1, clock=clock))
    assert all(p.clock is clock for p in made)


async def test_retry_waits_on_a_minimal_clock() -> None:
    """retry sleeps through a user clock's sleep()."""
    clock = MinimalClock()
    calls = 0

    @retry(attempts=3, backoff=0.25, clock=clock)
    async def flaky() -> int:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ValueError
        return calls

    assert (await flaky(), clock.slept) == (3, [0.25, 0.25])


def test_sync_retry_without_sleep_blocking_uses_time_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """A clock without sleep_blocking makes sync retry fall back to time.sleep."""
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    blocking_sleep(MinimalClock(), 0.5)
    assert slept == [0.5]


async def test_timeout_without_call_later_uses_loop_timer() -> None:
    """A clock without call_later makes timeout schedule on the event loop (a timer handle is returned)."""
    handle = call_later(MinimalClock(), 60, lambda: None)
    handle.cancel()
    assert isinstance(handle, asyncio.TimerHandle)


@pytest.mark.parametrize("bad", [object(), 3, "clock"], ids=repr)
def test_bad_clock_rejected(bad: Any) -> None:
    """A clock= without monotonic() and sleep() raises TypeError naming `clock`."""
    with pytest.raises(TypeError, match="clock"):
        retry(clock=bad)


def test_the_time_module_is_not_a_clock() -> None:
    """Passing the time module as clock= fails at once: its sleep would block the event loop."""
    import time

    from resilient import retry

    with pytest.raises(TypeError, match="clock"):
        retry(clock=time)  # type: ignore[arg-type]


# --- the default clock: the system clock unless told otherwise --------------------------


def test_no_running_loop_before_asyncio_is_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before asyncio is imported the clock assumes no loop; afterwards it uses asyncio's own lookup."""
    import sys

    from resilient import _clock

    monkeypatch.setattr(_clock, "_running_loop", _clock._probe_running_loop)
    events = sys.modules.pop("asyncio.events")
    try:
        before = _clock._running_loop()
    finally:
        sys.modules["asyncio.events"] = events
    after = _clock._running_loop()
    assert (before, after, _clock._running_loop is events._get_running_loop) == (None, None, True)


async def test_default_clock_waits_on_asyncio_without_an_override(monkeypatch: pytest.MonkeyPatch) -> None:
    """A default clock serving nothing sleeps with asyncio.sleep and schedules on the running loop."""
    from resilient._clock import DefaultClock

    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    clock = DefaultClock()
    await clock.sleep(1.5)
    handle = clock.call_later(60, lambda: None)
    handle.cancel()
    assert (slept, isinstance(handle, asyncio.TimerHandle)) == ([1.5], True)


def test_default_clock_blocks_with_time_sleep_without_an_override(monkeypatch: pytest.MonkeyPatch) -> None:
    """A default clock blocks with time.sleep, serving nothing or a clock without sleep_blocking."""
    from resilient._clock import DefaultClock

    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    clock = DefaultClock()
    clock.sleep_blocking(0.25)
    clock.target = MinimalClock()
    clock.sleep_blocking(0.5)
    assert slept == [0.25, 0.5]


async def test_default_clock_serving_a_minimal_clock_times_on_the_loop() -> None:
    """A default clock serving a clock without call_later schedules on the loop's timer."""
    from resilient._clock import DefaultClock

    clock = DefaultClock()
    clock.target = MinimalClock()
    handle = clock.call_later(60, lambda: None)
    handle.cancel()
    assert isinstance(handle, asyncio.TimerHandle)


async def test_timeout_with_a_patched_monotonic_follows_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside a loop, a timeout's deadline is measured on a replaced time.monotonic (freezegun's way)."""
    monkeypatch.setattr(time, "monotonic", lambda: 500.0)
    async with timeout(10):
        left = resilient.remaining()
    assert left == 10.0


async def test_timeout_deadline_clock_is_pinned_and_readable() -> None:
    """On a standard loop a system-clock timeout measures its deadline on time.monotonic directly."""
    from resilient._clock import MONOTONIC_CLOCK, LoopClock

    async with timeout(10):
        left = resilient.remaining()
    loop = asyncio.get_running_loop()
    assert left is not None
    assert 0 < left <= 10
    assert (repr(MONOTONIC_CLOCK), repr(LoopClock(loop))) == ("MonotonicClock()", f"LoopClock({loop!r})")
