"""One clock for every policy: use_clock() and pipeline(..., clock=)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import pytest

import resilient
from resilient import (
    BulkheadFullError,
    CircuitState,
    RateLimitedError,
    TimeoutExceededError,
    bulkhead,
    circuit_breaker,
    fallback,
    pipeline,
    pipeline_of,
    rate_limiter,
    retry,
    timeout,
)
from resilient._clock import DefaultClock
from resilient._clock_kinds import active_clock
from resilient.events import CallFailed, RetryScheduled
from resilient.testing import FakeClock, capture_events, use_clock

# Built at import time with no clock, like the code under test in a user's suite.
_answers: list[Any] = []


@retry(attempts=3, on=ConnectionError, backoff=5.0)
def module_level_sync() -> str:
    answer = _answers.pop(0)
    if isinstance(answer, Exception):
        raise answer
    return str(answer)


@retry(attempts=3, on=ConnectionError, backoff=5.0)
async def module_level_async() -> str:
    answer = _answers.pop(0)
    if isinstance(answer, Exception):
        raise answer
    return str(answer)


# --- use_clock -------------------------------------------------------------------------


def test_use_clock_serves_module_level_sync_retry(clock: FakeClock) -> None:
    """A retry built at import time with no clock waits on the clock use_clock installed."""
    _answers[:] = [ConnectionError(), ConnectionError(), "ok"]
    with use_clock(clock) as installed:
        assert module_level_sync() == "ok"
    assert (installed, clock.sleeps, clock.monotonic()) == (clock, [5.0, 5.0], 10.0)


async def test_use_clock_serves_module_level_async_retry(clock: FakeClock) -> None:
    """An async retry with no clock sleeps on the installed clock: virtual time, no real wait."""
    _answers[:] = [ConnectionError(), "ok"]
    with use_clock(clock):
        assert await module_level_async() == "ok"
    assert clock.sleeps == [5.0]


async def test_use_clock_times_out_in_virtual_time(clock: FakeClock) -> None:
    """A timeout with no clock fires on the installed clock's timers, and remaining() reads it."""

    @timeout(30)
    async def hangs() -> None:
        left.append(resilient.remaining())
        await clock.sleep(3600)

    left: list[float | None] = []
    with use_clock(clock), pytest.raises(TimeoutExceededError):
        await hangs()
    assert (left, clock.monotonic()) == ([30.0], 30.0)


def test_use_clock_drives_breaker_recovery(clock: FakeClock) -> None:
    """A breaker with no clock recovers when the installed clock advances past recovery_timeout."""
    with use_clock(clock):
        breaker = circuit_breaker(failure_threshold=1, recovery_timeout=30)
        with pytest.raises(ConnectionError), breaker:
            raise ConnectionError
        opened = breaker.state
        clock.advance(30)
        assert (opened, breaker.state) == (CircuitState.OPEN, CircuitState.HALF_OPEN)


async def test_use_clock_drives_bulkhead_queue_timeout(clock: FakeClock) -> None:
    """A queued async call gives up after queue_timeout of the installed clock's time."""
    gate = bulkhead(1, max_queue=1, queue_timeout=10)
    release = asyncio.Event()

    async def hold() -> None:
        async with gate:
            await release.wait()

    with use_clock(clock):
        holder = asyncio.create_task(hold())
        await asyncio.sleep(0)
        waiter = asyncio.create_task(gate.call(asyncio.sleep, 0))
        await asyncio.sleep(0)
        clock.advance(10)
        with pytest.raises(BulkheadFullError):
            await waiter
        release.set()
        await holder


def test_use_clock_wakes_a_blocked_thread(clock: FakeClock) -> None:
    """A thread queued on a bulkhead with no clock is timed out by the installed clock's advance."""
    gate = bulkhead(1, max_queue=1, queue_timeout=10)
    outcome: list[str] = []

    def wait_for_slot() -> None:
        try:
            with gate:
                outcome.append("ran")
        except BulkheadFullError:
            outcome.append("rejected")

    with use_clock(clock), gate:
        thread = threading.Thread(target=wait_for_slot)
        thread.start()
        guard = time.monotonic() + 30
        while gate.queued == 0:  # yield the CPU until the thread is queued (no sleep)
            assert time.monotonic() < guard, "the thread never queued"
            os.sched_yield()
        clock.advance(10)
        thread.join(5)
    assert outcome == ["rejected"]


def test_explicit_clock_wins_over_use_clock(clock: FakeClock) -> None:
    """A policy built with clock= keeps its own clock while use_clock is on."""
    own = FakeClock()
    policy = retry(attempts=2, on=ConnectionError, backoff=1.0, clock=own)
    fails = [ConnectionError(), "ok"]

    def flaky() -> str:
        answer = fails.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return str(answer)

    with use_clock(clock):
        assert policy.call(flaky) == "ok"
    assert (own.sleeps, clock.sleeps) == ([1.0], [])


def test_use_clock_restores_the_previous_clock() -> None:
    """Nested use_clock blocks restore the clock in force before each; None means the system clock."""
    outer, inner = FakeClock(10), FakeClock(20)
    policy = retry()
    seen = []
    with use_clock(outer):
        seen.append(policy.clock.monotonic())
        with use_clock(inner):
            seen.append(policy.clock.monotonic())
            with use_clock(None):
                seen.append(active_clock(policy.clock) is policy.clock)
        seen.append(policy.clock.monotonic())
    seen.append(active_clock(policy.clock) is policy.clock)
    assert seen == [10.0, 20.0, True, 10.0, True]


def test_use_clock_without_with_stays_on_until_replaced(clock: FakeClock) -> None:
    """Called as a plain function, use_clock switches at once; its context manager still restores."""
    restore = use_clock(clock)
    try:
        assert retry().clock.monotonic() == clock.monotonic()
    finally:
        with restore:
            pass
    assert active_clock(retry().clock) is not clock


@pytest.mark.parametrize("bad", [object(), 3], ids=repr)
def test_use_clock_rejects_a_non_clock(bad: Any) -> None:
    """use_clock with something that is not a Clock raises TypeError naming `clock` and changes nothing."""
    with pytest.raises(TypeError, match="clock"):
        use_clock(bad)
    assert type(active_clock(retry().clock)) is DefaultClock


def test_default_clock_repr_names_what_it_serves(clock: FakeClock) -> None:
    """A policy's default clock says whether it serves the system clock or another one."""
    policy = retry()
    plain = repr(policy.clock)
    with use_clock(clock):
        served = repr(policy.clock)
    assert (plain, served) == ("DefaultClock()", f"DefaultClock(serving={clock!r})")


# --- pipeline(..., clock=) ----------------------------------------------------------------


async def test_pipeline_clock_reaches_its_policies(clock: FakeClock) -> None:
    """pipeline(..., clock=c) gives c to the policies built without one: retry waits, timeout fires on it."""
    attempts = 0

    @pipeline(retry(attempts=3, on=TimeoutExceededError, backoff=2.0), timeout(1.0), clock=clock)
    async def slow() -> None:
        nonlocal attempts
        attempts += 1
        await clock.sleep(60)

    with pytest.raises(TimeoutExceededError):
        await slow()
    assert (attempts, clock.sleeps[1::2], clock.monotonic()) == (3, [2.0, 2.0], 7.0)


def test_pipeline_clock_leaves_explicit_clocks_alone(clock: FakeClock) -> None:
    """A policy given clock= keeps it inside a pipeline with another clock."""
    own = FakeClock()
    explicit = retry(clock=own)
    implicit = circuit_breaker()
    pipeline(explicit, implicit, clock=clock)
    assert (active_clock(explicit.clock), active_clock(implicit.clock)) == (own, clock)


def test_pipeline_clock_drives_breaker_recovery(clock: FakeClock) -> None:
    """A breaker inside pipeline(..., clock=c) recovers in c's time."""
    breaker = circuit_breaker(failure_threshold=1, recovery_timeout=30)

    @pipeline(breaker, clock=clock)
    def boom() -> None:
        raise ConnectionError

    with pytest.raises(ConnectionError):
        boom()
    clock.advance(30)
    assert breaker.state is CircuitState.HALF_OPEN


def test_pipeline_clock_conflict_is_refused(clock: FakeClock) -> None:
    """A policy given one pipeline's clock refuses another's (ValueError naming `clock`); nothing changes."""
    shared = circuit_breaker()
    fresh = retry()
    pipeline(shared, clock=clock)
    pipeline(shared, clock=clock)  # the same clock again is fine
    with pytest.raises(ValueError, match="clock"):
        pipeline(fresh, shared, clock=FakeClock())
    assert (active_clock(shared.clock), active_clock(fresh.clock) is fresh.clock) == (clock, True)


def test_stacking_on_a_clocked_pipeline_passes_the_clock_on(clock: FakeClock) -> None:
    """A decorator stacked on a function guarded by pipeline(..., clock=c) gets c too."""
    outer = fallback("default")

    @outer
    @pipeline(retry(attempts=1), clock=clock)
    def boom() -> str:
        raise ConnectionError

    assert (boom(), active_clock(outer.clock), pipeline_of(boom).clock) == ("default", clock, clock)


def test_pipeline_without_clock_times_calls_on_its_policies_clock(clock: FakeClock) -> None:
    """A pipeline given no clock measures call durations on the clock its policies were given."""
    inner = retry(attempts=2, on=ConnectionError, backoff=4.0)
    pipeline(inner, clock=clock)

    @inner
    def boom() -> None:
        raise ConnectionError

    with capture_events(CallFailed, RetryScheduled) as events, pytest.raises(ConnectionError):
        boom()
    assert [(type(e).__name__, e.time) for e in events] == [("RetryScheduled", 0.0), ("CallFailed", 4.0)]


def test_use_clock_drives_a_rate_limiter(clock: FakeClock) -> None:
    """A rate limiter with no clock schedules on the installed clock: advancing it frees the next permit."""
    limiter = rate_limiter(1, per=10.0, burst=1)
    with use_clock(clock):
        limiter.call(lambda: None)
        with pytest.raises(RateLimitedError):
            limiter.call(lambda: None)
        clock.advance(10.0)
        assert limiter.call(lambda: "ok") == "ok"


async def test_use_clock_rate_limiter_waits_on_the_installed_clock(clock: FakeClock) -> None:
    """A rate limiter with no clock waits for its next permit on the installed clock (async, then sync)."""
    limiter = rate_limiter(1, per=10.0, burst=1, max_wait=30.0)
    with use_clock(clock):
        await limiter.call(asyncio.sleep, 0)
        await limiter.call(asyncio.sleep, 0)
        waited = clock.monotonic()
        limiter.call(lambda: None)
    assert (waited, clock.monotonic()) == (10.0, 20.0)


async def test_process_clock_delegates_its_waits() -> None:
    """The rate limiter's process-wide clock schedules and says what it wraps."""
    from resilient._clock_kinds import ProcessClock

    wrapped = DefaultClock()
    clock = ProcessClock(wrapped)
    handle = clock.call_later(60, lambda: None)
    handle.cancel()
    assert (isinstance(handle, asyncio.TimerHandle), repr(clock)) == (True, "ProcessClock(DefaultClock())")
