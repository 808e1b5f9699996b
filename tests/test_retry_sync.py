"""Retry around sync functions: blocking waits through the clock, threads, and decoration errors."""

from __future__ import annotations

import functools
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator

import pytest

from resilient import backoff, current_call, retry
from resilient.testing import FakeClock


class Boom(Exception):
    """A retryable failure."""


class BlockingOnlyClock(FakeClock):
    """A FakeClock whose async sleep must never be used."""

    async def sleep(self, seconds: float) -> None:
        """Fail: a sync retry must not use the async sleep."""
        raise AssertionError("sync retry used the async sleep")


class MonotonicOnlyClock:
    """A minimal Clock with no sleep_blocking."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        """Return the fixed time."""
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Fail: a sync retry must not use the async sleep."""
        raise AssertionError("sync retry used the async sleep")


class PerThreadClock(FakeClock):
    """A FakeClock that records each thread's blocking sleeps separately."""

    def __init__(self) -> None:
        super().__init__()
        self.by_thread: dict[int, list[float]] = defaultdict(list)

    def sleep_blocking(self, seconds: float) -> None:
        """Record the wait under the current thread, then advance."""
        self.by_thread[threading.get_ident()].append(seconds)
        super().sleep_blocking(seconds)


def failing(calls: list[int]) -> Boom:
    """Count a call and return the error to raise."""
    calls.append(1)
    return Boom()


def test_sync_retry_waits_through_sleep_blocking() -> None:
    """A sync retry waits with the clock's sleep_blocking, never its async sleep."""
    clock = BlockingOnlyClock()
    calls: list[int] = []

    @retry(attempts=3, backoff=0.5, clock=clock)
    def op() -> None:
        raise failing(calls)

    with pytest.raises(Boom):
        op()
    assert (len(calls), clock.sleeps, clock.monotonic()) == (3, [0.5, 0.5], 1.0)


def test_clock_without_sleep_blocking_falls_back_to_time_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a clock that has no sleep_blocking, a sync retry blocks with time.sleep."""
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    calls: list[int] = []

    @retry(attempts=3, backoff=0.25, clock=MonotonicOnlyClock())
    def op() -> None:
        raise failing(calls)

    with pytest.raises(Boom):
        op()
    assert (len(calls), slept) == (3, [0.25, 0.25])


def test_default_clock_blocks_with_time_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the system clock, a sync retry waits with time.sleep (patched here, so nothing waits)."""
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)

    @retry(attempts=2, backoff=3.0)
    def op() -> None:
        raise Boom()

    with pytest.raises(Boom):
        op()
    assert slept == [3.0]


def test_threads_never_share_a_backoff_sequence() -> None:
    """Four threads retrying at once each see 0.1, 0.2, 0.4."""
    clock = PerThreadClock()
    start = threading.Barrier(4)

    @retry(attempts=4, backoff=backoff.exponential(initial=0.1, jitter="none"), clock=clock)
    def op() -> None:
        raise Boom()

    def worker() -> None:
        start.wait()
        with pytest.raises(Boom):
            op()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(clock.by_thread) == 4
    assert all(s == pytest.approx([0.1, 0.2, 0.4]) for s in clock.by_thread.values())


def test_current_call_in_a_sync_function(clock: FakeClock) -> None:
    """current_call() works in a sync function: operation and attempt are set."""
    seen: list[tuple[str, int]] = []

    @retry(attempts=2, backoff=0, clock=clock)
    def op() -> None:
        ctx = current_call()
        assert ctx is not None
        seen.append((ctx.operation, ctx.attempt))
        raise Boom()

    with pytest.raises(Boom):
        op()
    assert [a for _, a in seen] == [1, 2]
    assert seen[0][0].endswith("test_current_call_in_a_sync_function.<locals>.op")
    assert current_call() is None


def test_call_with_a_partial(clock: FakeClock) -> None:
    """retry(...).call accepts a functools.partial of a sync function."""
    calls: list[int] = []

    def add(a: int, b: int) -> int:
        calls.append(1)
        if len(calls) < 2:
            raise Boom()
        return a + b

    assert retry(backoff=0, clock=clock).call(functools.partial(add, 1), 2) == 3


def test_generator_functions_are_rejected_at_decoration() -> None:
    """Decorating a generator function raises TypeError at once."""

    def gen() -> Iterator[int]:
        yield 1

    with pytest.raises(TypeError, match="generator"):
        retry()(gen)


def test_async_generator_functions_are_rejected_at_decoration() -> None:
    """Decorating an async generator function raises TypeError at once."""

    async def agen() -> AsyncIterator[int]:
        yield 1

    with pytest.raises(TypeError, match="generator"):
        retry()(agen)
