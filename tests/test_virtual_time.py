"""Virtual-time event loops (looptime): policies read the time the loop runs on."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import looptime
import pytest

import resilient
from resilient import CircuitState, SystemClock, circuit_breaker, retry, timeout
from resilient._clock import SYSTEM_CLOCK
from resilient.events import CallFailed, RetriesExhausted
from resilient.testing import capture_events

T = TypeVar("T")


def in_loop_time(main: Callable[[], Coroutine[Any, Any, T]], start: float = 0.0) -> T:
    """Run *main* on a looptime event loop whose clock starts at *start* and jumps when idle."""
    with asyncio.Runner(loop_factory=lambda: looptime.new_event_loop(start=start)) as runner:
        return runner.run(main())


def test_remaining_follows_loop_time() -> None:
    """Inside a timeout, remaining() counts down with the loop's virtual time."""

    async def main() -> float | None:
        async with timeout(10):
            await asyncio.sleep(4)
            return resilient.remaining()

    assert in_loop_time(main) == 6.0


def test_timeout_fires_at_its_deadline_in_loop_time() -> None:
    """A timeout fires when the loop's virtual time reaches it, and remaining() agrees up to then."""

    async def main() -> tuple[float, list[float | None]]:
        seen: list[float | None] = []
        loop = asyncio.get_running_loop()
        try:
            async with timeout(5):
                for _ in range(10):
                    seen.append(resilient.remaining())
                    await asyncio.sleep(2)
        except TimeoutError:
            pass
        return loop.time(), seen

    assert in_loop_time(main, start=100.0) == (105.0, [5.0, 3.0, 1.0])


def test_breaker_recovers_in_loop_time() -> None:
    """An open breaker lets a probe through once recovery_timeout of loop time has passed."""
    breaker = circuit_breaker(failure_threshold=1, recovery_timeout=30)
    healthy = False

    @breaker
    async def call() -> str:
        if not healthy:
            raise ConnectionError
        return "ok"

    async def main() -> tuple[CircuitState, CircuitState, str]:
        nonlocal healthy
        with pytest.raises(ConnectionError):
            await call()
        opened = breaker.state
        await asyncio.sleep(31)
        recovered = breaker.state
        healthy = True
        return opened, recovered, await call()

    assert in_loop_time(main) == (CircuitState.OPEN, CircuitState.HALF_OPEN, "ok")


def test_retry_deadline_counts_loop_time() -> None:
    """retry's deadline= is measured in loop time: virtual backoff waits use it up."""
    calls = 0

    @retry(attempts=10, on=ConnectionError, backoff=2.0, deadline=5.0)
    async def flaky() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError

    async def main() -> None:
        await flaky()

    with capture_events(RetriesExhausted) as events, pytest.raises(ConnectionError):
        in_loop_time(main)
    assert (calls, [e.reason for e in events]) == (3, ["deadline"])  # type: ignore[attr-defined]


def test_call_durations_in_loop_time() -> None:
    """CallFailed.duration is the loop time the call took."""

    @retry(attempts=2, on=ConnectionError, backoff=1.5)
    async def flaky() -> None:
        await asyncio.sleep(1)
        raise ConnectionError

    async def main() -> None:
        await flaky()

    with capture_events(CallFailed) as events, pytest.raises(ConnectionError):
        in_loop_time(main)
    assert [e.duration for e in events] == [3.5]  # type: ignore[attr-defined]


async def test_standard_loop_reads_time_monotonic(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a standard asyncio loop the system clock reads time.monotonic, as that loop does."""
    monkeypatch.setattr(time, "monotonic", lambda: 1234.5)
    assert (SYSTEM_CLOCK.monotonic(), asyncio.get_running_loop().time()) == (1234.5, 1234.5)


def test_patched_monotonic_wins_over_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """A replaced time.monotonic (freezegun, a monkeypatch) is followed even inside a virtual loop."""

    async def main() -> float:
        monkeypatch.setattr(time, "monotonic", lambda: 1234.5)
        try:
            return SYSTEM_CLOCK.monotonic()
        finally:
            monkeypatch.undo()

    assert in_loop_time(main, start=7.0) == 1234.5


def test_sync_code_reads_time_monotonic(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no running loop the system clock reads time.monotonic."""
    monkeypatch.setattr(time, "monotonic", lambda: 42.0)
    assert SYSTEM_CLOCK.monotonic() == 42.0


def test_remaining_in_a_worker_thread_reads_loop_time() -> None:
    """A deadline set on a virtual loop is read on that loop's clock from another thread too."""

    async def main() -> list[tuple[float | None, float]]:
        loop = asyncio.get_running_loop()
        seen: list[tuple[float | None, float]] = []
        async with timeout(10):
            await asyncio.sleep(4)
            context = contextvars.copy_context()  # what asyncio.to_thread hands the thread
            worker = threading.Thread(
                target=lambda: seen.append(context.run(lambda: (resilient.remaining(), loop.time())))
            )
            worker.start()
            worker.join()  # the loop is blocked meanwhile: its time stands still
        return seen

    assert in_loop_time(main) == [(6.0, 4.0)]


def test_an_explicit_system_clock_follows_the_loop_too() -> None:
    """SystemClock() given explicitly reads the virtual loop's time as the default clock does."""

    async def main() -> tuple[float, float]:
        await asyncio.sleep(12)
        return SystemClock().monotonic(), asyncio.get_running_loop().time()

    assert in_loop_time(main) == (12.0, 12.0)
