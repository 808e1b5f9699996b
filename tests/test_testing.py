"""Test aids: FakeClock semantics, capture_events and the set_testing switch."""

from __future__ import annotations

import asyncio
import functools
import math
import threading
import time
from datetime import timedelta
from typing import Any

import pytest

import resilient
from resilient import retry
from resilient._config import is_testing
from resilient.events import RetryScheduled
from resilient.testing import FakeClock, capture_events, set_testing

# --- FakeClock ----------------------------------------------------------------------------


def test_starts_at_zero_or_given_time() -> None:
    """A FakeClock starts at 0.0, or at the start it is given."""
    assert (FakeClock().monotonic(), FakeClock(100).monotonic()) == (0.0, 100.0)


def test_time_alias(clock: FakeClock) -> None:
    """time() is an alias of monotonic()."""
    clock.advance(3)
    assert clock.time() == clock.monotonic() == 3.0


def test_advance_moves_time(clock: FakeClock) -> None:
    """advance() moves virtual time forward by the amount given."""
    clock.advance(1.5)
    clock.advance(timedelta(seconds=2))
    assert clock.monotonic() == 3.5


@pytest.mark.parametrize("bad", [-1, -0.001, math.nan])
def test_advance_rejects_negative_and_nan(clock: FakeClock, bad: float) -> None:
    """advance() with a negative or NaN amount raises ValueError and leaves time alone."""
    with pytest.raises(ValueError, match="seconds"):
        clock.advance(bad)
    assert clock.monotonic() == 0.0


async def test_advance_and_sleep_reject_infinity(clock: FakeClock) -> None:
    """advance, sleep and sleep_blocking of math.inf raise ValueError naming seconds (time cannot be inf)."""
    for move in (clock.advance, clock.sleep_blocking):
        with pytest.raises(ValueError, match="seconds"):
            move(math.inf)
    with pytest.raises(ValueError, match="seconds"):
        await clock.sleep(math.inf)
    assert (clock.monotonic(), clock.sleeps) == (0.0, [])


async def test_sleep_advances_instantly(clock: FakeClock) -> None:
    """await clock.sleep(s) returns at once with the virtual time s later."""
    loop = asyncio.get_running_loop()
    real_start = loop.time()
    await clock.sleep(3600)
    assert clock.monotonic() == 3600.0
    assert loop.time() - real_start < 60  # a sanity bound, not a timing assertion


async def test_sleeps_recorded(clock: FakeClock) -> None:
    """Every sleep duration is recorded in .sleeps, blocking ones included."""
    await clock.sleep(1)
    clock.sleep_blocking(2)
    await clock.sleep(0)
    assert clock.sleeps == [1.0, 2.0, 0.0]


async def test_sleep_yields_to_loop(clock: FakeClock) -> None:
    """clock.sleep yields to the event loop, so other tasks run."""
    ran: list[str] = []

    async def other() -> None:
        ran.append("other")

    task = asyncio.ensure_future(other())
    await clock.sleep(0)
    assert ran == ["other"]
    await task


def test_sleep_blocking_advances(clock: FakeClock) -> None:
    """sleep_blocking advances virtual time without blocking."""
    clock.sleep_blocking(5)
    assert clock.monotonic() == 5.0


def test_call_later_fires_when_due(clock: FakeClock) -> None:
    """A call_later callback fires when time reaches its due time, not before."""
    fired: list[float] = []
    clock.call_later(2, lambda: fired.append(clock.monotonic()))
    clock.advance(1.999)
    assert fired == []
    clock.advance(0.001)
    assert fired == [2.0]


def test_call_later_fires_at_due_time_during_long_advance(clock: FakeClock) -> None:
    """Timers passed by one long advance fire in order, each seeing its own due time."""
    fired: list[tuple[str, float]] = []
    clock.call_later(3, lambda: fired.append(("c", clock.monotonic())))
    clock.call_later(1, lambda: fired.append(("a", clock.monotonic())))
    clock.call_later(2, lambda: fired.append(("b", clock.monotonic())))
    clock.advance(10)
    assert (fired, clock.monotonic()) == ([("a", 1.0), ("b", 2.0), ("c", 3.0)], 10.0)


def test_call_later_same_time_fifo(clock: FakeClock) -> None:
    """Timers due at the same time fire in the order they were scheduled."""
    fired: list[int] = []
    for i in range(5):
        clock.call_later(1, functools.partial(fired.append, i))
    clock.advance(1)
    assert fired == [0, 1, 2, 3, 4]


def test_call_later_fires_once(clock: FakeClock) -> None:
    """A timer fires exactly once however far time moves."""
    fired: list[int] = []
    clock.call_later(1, lambda: fired.append(1))
    clock.advance(1)
    clock.advance(5)
    assert fired == [1]


def test_cancelled_timer_never_fires(clock: FakeClock) -> None:
    """A cancelled timer does not fire."""
    fired: list[int] = []
    handle = clock.call_later(1, lambda: fired.append(1))
    handle.cancel()
    clock.advance(5)
    assert fired == []


def test_timer_scheduled_by_timer_fires_in_same_advance(clock: FakeClock) -> None:
    """A callback that schedules another timer within the advanced span sees it fire too."""
    fired: list[float] = []

    def first() -> None:
        clock.call_later(1, lambda: fired.append(clock.monotonic()))

    clock.call_later(1, first)
    clock.advance(5)
    assert fired == [2.0]


async def test_zero_delay_timer_fires_on_next_loop_iteration(clock: FakeClock) -> None:
    """A call_later with delay <= 0 fires on the next loop iteration without advancing time."""
    fired: list[float] = []
    clock.call_later(0, lambda: fired.append(clock.monotonic()))
    assert fired == []
    await asyncio.sleep(0)
    assert fired == [0.0]


async def test_sleep_fires_timers_on_the_way(clock: FakeClock) -> None:
    """A sleep passing a timer's due time fires it at that time."""
    fired: list[float] = []
    clock.call_later(2, lambda: fired.append(clock.monotonic()))
    await clock.sleep(5)
    assert (fired, clock.monotonic()) == ([2.0], 5.0)


async def test_sleep_stops_when_its_task_is_cancelled_by_a_timer(clock: FakeClock) -> None:
    """A sleep interrupted by a timer that cancels its task ends at the timer's time."""
    task = asyncio.current_task()
    assert task is not None
    clock.call_later(2, task.cancel)
    with pytest.raises(asyncio.CancelledError):
        await clock.sleep(5)
    task.uncancel()
    assert clock.monotonic() == 2.0


async def test_advance_from_another_task_wakes_sleeper_via_timer(clock: FakeClock) -> None:
    """advance() from one task fires timers that another task waits on."""
    done = asyncio.Event()
    clock.call_later(3, done.set)
    waiter = asyncio.ensure_future(done.wait())
    await asyncio.sleep(0)
    clock.advance(3)
    assert await waiter is True


def test_advance_from_threads_is_consistent(clock: FakeClock) -> None:
    """Advancing from several threads adds up exactly and fires each timer once."""
    fired: list[int] = []
    for i in range(120):
        clock.call_later(i, functools.partial(fired.append, i))

    def work() -> None:
        for _ in range(100):
            clock.advance(0.25)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (clock.monotonic(), sorted(fired)) == (100.0, list(range(101)))


def test_repr_shows_time(clock: FakeClock) -> None:
    """A FakeClock's repr shows the virtual time."""
    clock.advance(2)
    assert repr(clock) == "FakeClock(now=2.0)"


def test_fake_clock_public_path() -> None:
    """FakeClock is documented under resilient.testing."""
    assert FakeClock.__module__ == "resilient.testing"


# --- capture_events -------------------------------------------------------------------------


async def test_capture_events_records_policy_events(clock: FakeClock) -> None:
    """capture_events() yields a list of the events a policy emits on the default bus, in order."""
    calls = 0

    @retry(attempts=3, backoff=1, clock=clock)
    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ValueError

    with capture_events(RetryScheduled) as events:
        await flaky()
    assert [(e.attempt, e.delay, e.time) for e in events] == [(1, 1.0, 0.0), (2, 1.0, 1.0)]  # type: ignore[attr-defined]


def test_capture_events_nested() -> None:
    """Nested capture_events blocks each record what was emitted while they were open."""
    from resilient.events import default_bus

    event = RetryScheduled(policy="retry", name=None, operation=None, time=0.0, attempt=1, delay=0.0)
    with capture_events() as outer:
        default_bus.emit(event)
        with capture_events() as inner:
            default_bus.emit(event)
    assert (len(outer), len(inner)) == (2, 1)


# --- set_testing -----------------------------------------------------------------------------


@pytest.fixture
def restore_testing() -> Any:
    """Put test mode back as it was, whatever a test does."""
    before = is_testing()
    yield
    set_testing(before)


def test_set_testing_context_manager_restores(restore_testing: None) -> None:
    """set_testing(True) used in `with` turns test mode on inside and restores it after."""
    with set_testing(True):
        inside = is_testing()
    assert (inside, is_testing()) == (True, False)


def test_set_testing_takes_effect_without_with(restore_testing: None) -> None:
    """set_testing(True) takes effect at once, even when not used as a context manager."""
    set_testing(True)
    assert is_testing()


def test_set_testing_nested_restores_each_level(restore_testing: None) -> None:
    """Nested set_testing blocks restore the mode of the enclosing block."""
    with set_testing(True):
        with set_testing(False):
            inner = is_testing()
        middle = is_testing()
    assert (inner, middle, is_testing()) == (False, True, False)


def test_set_testing_restores_after_exception(restore_testing: None) -> None:
    """An exception inside the block still restores the previous mode."""
    with pytest.raises(RuntimeError), set_testing(True):
        raise RuntimeError
    assert not is_testing()


def test_set_testing_rejects_non_bool(restore_testing: None) -> None:
    """set_testing with a non-bool raises TypeError naming `testing`."""
    with pytest.raises(TypeError, match="testing"):
        set_testing(1)  # type: ignore[arg-type]


def test_set_testing_exported_everywhere() -> None:
    """set_testing is the same function in resilient and resilient.testing."""
    assert resilient.set_testing is set_testing


def test_testing_mode_skips_waits(monkeypatch: pytest.MonkeyPatch, restore_testing: None) -> None:
    """In test mode a retry with long backoff on the system clock never sleeps."""
    monkeypatch.setattr(time, "sleep", lambda s: pytest.fail(f"slept {s}"))
    calls = 0

    @retry(attempts=3, backoff=100)
    def flaky() -> int:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ValueError
        return calls

    with set_testing(True):
        assert flaky() == 3


async def test_testing_mode_skips_async_waits(restore_testing: None) -> None:
    """In test mode an async retry with long backoff never waits on its clock."""
    clock = FakeClock()
    calls = 0

    @retry(attempts=3, backoff=100, clock=clock)
    async def flaky() -> int:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ValueError
        return calls

    with set_testing(True):
        assert await flaky() == 3
    assert clock.monotonic() == 0.0


def test_testing_mode_keeps_decisions(restore_testing: None) -> None:
    """Test mode skips waits but still gives up after the configured attempts."""
    calls = 0

    @retry(attempts=4, backoff=100)
    def fails() -> None:
        nonlocal calls
        calls += 1
        raise ValueError

    with set_testing(True), pytest.raises(ValueError):
        fails()
    assert calls == 4


def test_attempts_outside_an_attempts_setting_are_the_policys() -> None:
    """With no set_testing(attempts=...) in force a policy's own attempts stand."""
    from resilient._config import attempts_in_test_mode

    with set_testing(True):
        inside = attempts_in_test_mode(3)
    assert (inside, attempts_in_test_mode(4)) == (3, 4)
