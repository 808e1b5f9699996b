"""circuit_breaker: failure-rate windows (count and time) and slow-call detection."""

from __future__ import annotations

import pytest

from resilient import CircuitBreaker, CircuitOpenError, CircuitState, circuit_breaker
from resilient._breaker_stats import TIME_BUCKETS, CountWindow, TimeWindow
from resilient.testing import FakeClock


class Boom(Exception):
    """The dependency's failure in these tests."""


def state(breaker: CircuitBreaker) -> CircuitState:
    """Read the breaker's state (a function, so mypy does not narrow it between reads)."""
    return breaker.state


def feed(breaker: CircuitBreaker, pattern: str) -> list[CircuitState]:
    """Make one sync call per letter (F fails, S succeeds); return the state after each."""
    seen = []
    for letter in pattern:
        try:
            breaker.call(_boom if letter == "F" else _ok)
        except Boom:
            pass
        seen.append(breaker.state)
    return seen


def _boom() -> None:
    raise Boom


def _ok() -> None:
    return None


CL, OP = CircuitState.CLOSED, CircuitState.OPEN


# --- count window -------------------------------------------------------------------


def test_rate_opens_at_threshold(clock: FakeClock) -> None:
    """With failure_rate=0.5 and minimum_calls=4 it opens exactly when 2 of 4 calls failed."""
    breaker = circuit_breaker(failure_rate=0.5, minimum_calls=4, clock=clock)
    assert feed(breaker, "SFSF") == [CL, CL, CL, OP]


def test_rate_waits_for_minimum_calls(clock: FakeClock) -> None:
    """Failures below minimum_calls never open it, even at a 100% failure rate."""
    breaker = circuit_breaker(failure_rate=0.5, minimum_calls=5, clock=clock)
    assert feed(breaker, "FFFFF") == [CL, CL, CL, CL, OP]


def test_rate_mode_ignores_consecutive_threshold(clock: FakeClock) -> None:
    """In rate mode, failure_threshold consecutive failures below minimum_calls do not open it."""
    breaker = circuit_breaker(failure_threshold=2, failure_rate=0.9, minimum_calls=10, clock=clock)
    assert feed(breaker, "FFFF")[-1] is CL


def test_count_window_evicts_oldest(clock: FakeClock) -> None:
    """Only the last `window` calls count: old failures fall out of the rate."""
    breaker = circuit_breaker(failure_rate=0.75, window=4, minimum_calls=4, clock=clock)
    # Without eviction the rate after the last call would be 5/8 < 0.75.
    assert feed(breaker, "FFSSSFFF") == [CL, CL, CL, CL, CL, CL, CL, OP]


def test_minimum_calls_capped_at_window(clock: FakeClock) -> None:
    """A count window smaller than minimum_calls can still open once full."""
    breaker = circuit_breaker(failure_rate=1.0, window=3, minimum_calls=10, clock=clock)
    assert feed(breaker, "FFF") == [CL, CL, OP]


def test_rate_compares_exact_fractions(clock: FakeClock) -> None:
    """A rate of exactly 3/10 reaches failure_rate=0.3 (no float rounding miss)."""
    breaker = circuit_breaker(failure_rate=0.3, window=10, minimum_calls=10, clock=clock)
    assert feed(breaker, "SSSSSSSFFF")[-1] is OP


def test_window_cleared_when_closing(clock: FakeClock) -> None:
    """After a probe closes the breaker, the earlier failures no longer count."""
    breaker = circuit_breaker(failure_rate=0.5, minimum_calls=2, recovery_timeout=1, clock=clock)
    feed(breaker, "FF")
    clock.advance(1)
    assert feed(breaker, "S") == [CL]
    assert (breaker.stats().calls, feed(breaker, "F")) == (0, [CL])


def test_stats_report_window_rates(clock: FakeClock) -> None:
    """stats() reports calls, failures and the failure rate of the window."""
    breaker = circuit_breaker(failure_rate=0.9, window=10, clock=clock)
    feed(breaker, "SFSS")
    stats = breaker.stats()
    assert (stats.calls, stats.failures, stats.failure_rate, stats.slow_call_rate) == (4, 1, 0.25, 0.0)


# --- time window ------------------------------------------------------------------------


def test_time_window_forgets_old_calls(clock: FakeClock) -> None:
    """Failures older than window_seconds no longer count toward the rate."""
    breaker = circuit_breaker(failure_rate=1.0, window_seconds=10, minimum_calls=2, clock=clock)
    feed(breaker, "F")
    clock.advance(15)
    assert (feed(breaker, "F"), breaker.stats().calls) == ([CL], 1)
    assert feed(breaker, "F") == [OP]


def test_time_window_keeps_recent_calls(clock: FakeClock) -> None:
    """Calls within window_seconds of each other count together."""
    breaker = circuit_breaker(failure_rate=1.0, window_seconds=10, minimum_calls=2, clock=clock)
    feed(breaker, "F")
    clock.advance(8)
    assert feed(breaker, "F") == [OP]


def test_time_window_expires_bucket_by_bucket(clock: FakeClock) -> None:
    """As time passes, calls leave the window one bucket at a time."""
    breaker = circuit_breaker(failure_rate=1.0, window_seconds=10, minimum_calls=100, clock=clock)
    for _ in range(3):
        feed(breaker, "F")
        clock.advance(4)
    counts = []
    for _ in range(4):
        counts.append(breaker.stats().calls)
        clock.advance(4)
    assert counts == [2, 1, 0, 0]


def test_time_window_memory_is_fixed() -> None:
    """A time window holds TIME_BUCKETS buckets whatever the traffic."""
    window = TimeWindow(10.0)
    for i in range(10_000):
        window.add(i & 1, i * 0.001)
    assert (len(window._calls), window.calls, window.failures) == (TIME_BUCKETS, 10_000, 5_000)


def test_time_window_ignores_clock_going_back() -> None:
    """A reading earlier than the last one lands in the newest bucket instead of corrupting totals."""
    window = TimeWindow(10.0)
    window.add(1, 100.0)
    window.add(0, 50.0)
    assert (window.calls, window.failures) == (2, 1)


def test_count_window_totals_track_the_ring() -> None:
    """A count window's totals equal the outcomes of its last `size` additions."""
    window = CountWindow(3)
    codes = [1, 2, 3, 0, 1, 3]
    for code in codes:
        window.add(code, 0.0)
    last = codes[-3:]
    assert (window.calls, window.failures, window.slow) == (
        3,
        sum(c & 1 for c in last),
        sum(c >> 1 for c in last),
    )


# --- slow calls -------------------------------------------------------------------------------


def slow_breaker(clock: FakeClock, **config: object) -> CircuitBreaker:
    """A breaker that opens when half of at least 2 calls took more than 1 s."""
    settings: dict[str, object] = {"minimum_calls": 2, "recovery_timeout": 5, **config}
    return circuit_breaker(slow_call_duration=1, slow_call_rate=0.5, clock=clock, **settings)  # type: ignore[arg-type]


async def test_slow_async_calls_open_it(clock: FakeClock) -> None:
    """Two successful calls that each await 2 s of clock time open it by the slow-call rate."""
    breaker = slow_breaker(clock)

    @breaker
    async def sluggish() -> str:
        await clock.sleep(2)
        return "late"

    assert [await sluggish(), await sluggish()] == ["late", "late"]
    assert (state(breaker), breaker.stats().slow_calls) == (CircuitState.OPEN, 2)


def test_slow_sync_calls_open_it(clock: FakeClock) -> None:
    """Sync calls that take longer than slow_call_duration count as slow."""
    breaker = slow_breaker(clock)

    @breaker
    def sluggish() -> None:
        clock.advance(1.5)

    sluggish()
    sluggish()
    assert state(breaker) is CircuitState.OPEN


def test_call_of_exactly_the_duration_is_not_slow(clock: FakeClock) -> None:
    """A call taking exactly slow_call_duration is not slower than it."""
    breaker = slow_breaker(clock)

    @breaker
    def on_the_edge() -> None:
        clock.advance(1)

    on_the_edge()
    on_the_edge()
    assert (state(breaker), breaker.stats().slow_calls) == (CircuitState.CLOSED, 0)


def test_fast_calls_keep_slow_rate_low(clock: FakeClock) -> None:
    """One slow call among three fast ones stays below slow_call_rate=0.5."""
    breaker = slow_breaker(clock, minimum_calls=4)
    fast_then_slow = [0.1, 0.1, 2.0, 0.1]

    @breaker
    def work(seconds: float) -> None:
        clock.advance(seconds)

    for seconds in fast_then_slow:
        work(seconds)
    assert (state(breaker), breaker.stats().slow_call_rate) == (CircuitState.CLOSED, 0.25)


def test_slow_failures_count_as_slow_and_failed(clock: FakeClock) -> None:
    """A slow failure counts in both the failure and the slow statistics."""
    breaker = slow_breaker(clock, failure_rate=1.0, minimum_calls=10)

    @breaker
    def slow_fail() -> None:
        clock.advance(3)
        raise Boom

    with pytest.raises(Boom):
        slow_fail()
    stats = breaker.stats()
    assert (stats.calls, stats.failures, stats.slow_calls) == (1, 1, 1)


def test_consecutive_failures_still_open_with_slow_detection(clock: FakeClock) -> None:
    """With slow_call_duration but no failure_rate, failure_threshold consecutive failures open it."""
    breaker = slow_breaker(clock, failure_threshold=2, minimum_calls=100)
    assert feed(breaker, "FF") == [CL, OP]


def test_slow_probe_reopens(clock: FakeClock) -> None:
    """A probe that succeeds but is slow counts as a failed probe and re-opens the breaker."""
    breaker = slow_breaker(clock)

    @breaker
    def sluggish() -> None:
        clock.advance(2)

    sluggish()
    sluggish()
    clock.advance(5)
    sluggish()
    with pytest.raises(CircuitOpenError) as info:
        sluggish()
    assert info.value.retry_after == 5.0
