"""reset_policies(): breaker, bulkhead and retry-budget state cleared between tests, tracked weakly."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import pytest

from resilient import (
    BulkheadFullError,
    CircuitState,
    RateLimitedError,
    RetryBudget,
    bulkhead,
    circuit_breaker,
    rate_limiter,
)
from resilient.backends import BreakerBackend, MemoryBackend
from resilient.events import CircuitClosed
from resilient.testing import FakeClock, capture_events, reset_policies


class SharedBackend(BreakerBackend):
    """Stands for a shared (Redis-like) backend: state that is not the process's own."""

    def __init__(self) -> None:
        self.inner = MemoryBackend()
        self.resets = 0

    def bind(self, config: Any, clock: Any, *, name: str | None = None, bus: Any = None) -> None:
        self.inner.bind(config, clock)

    def acquire(self) -> Any:
        return self.inner.acquire()

    def record(self, permit: Any, outcome: Any) -> Any:
        return self.inner.record(permit, outcome)

    def release(self, permit: Any) -> None:
        self.inner.release(permit)

    def isolate(self) -> Any:
        return self.inner.isolate()

    def reset(self) -> Any:
        self.resets += 1
        return self.inner.reset()

    def state(self) -> Any:
        return self.inner.state()

    def stats(self) -> Any:
        return self.inner.stats()


def open_breaker(breaker: Any) -> None:
    """Make one call fail through *breaker* (threshold 1: it opens)."""
    with pytest.raises(ConnectionError), breaker:
        raise ConnectionError


def test_reset_closes_every_open_breaker() -> None:
    """Open and isolated breakers are closed again, with a CircuitClosed event each."""
    opened = circuit_breaker(failure_threshold=1, name="opened")
    isolated = circuit_breaker(name="isolated")
    open_breaker(opened)
    isolated.isolate()
    with capture_events(CircuitClosed) as events:
        reset_policies()
    assert (opened.state, isolated.state) == (CircuitState.CLOSED, CircuitState.CLOSED)
    assert sorted(e.name for e in events if e.name in ("opened", "isolated")) == ["isolated", "opened"]


def test_reset_clears_breaker_statistics(clock: FakeClock) -> None:
    """Failures counted so far are forgotten: the next failure alone does not open the breaker."""
    breaker = circuit_breaker(failure_threshold=2, clock=clock)
    open_breaker(breaker)
    reset_policies()
    open_breaker(breaker)
    assert (breaker.state, breaker.stats().consecutive_failures) == (CircuitState.CLOSED, 1)


def test_reset_leaves_shared_breaker_state_alone() -> None:
    """A breaker whose backend is not in-process (Redis) keeps its state: it belongs to the fleet."""
    backend = SharedBackend()
    breaker = circuit_breaker(failure_threshold=1, backend=backend)
    open_breaker(breaker)
    reset_policies()
    assert (breaker.state, backend.resets) == (CircuitState.OPEN, 0)


async def test_reset_turns_away_queued_calls_and_keeps_running_ones() -> None:
    """Queued calls get BulkheadFullError; the running call keeps its slot until it ends."""
    gate = bulkhead(1, max_queue=2)
    release = asyncio.Event()
    started = asyncio.Event()

    async def hold() -> str:
        started.set()
        await release.wait()
        return "done"

    holder = asyncio.create_task(gate.call(hold))
    await started.wait()
    waiters = [asyncio.create_task(gate.call(asyncio.sleep, 0)) for _ in range(2)]
    await asyncio.sleep(0)
    assert gate.queued == 2
    reset_policies()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    busy = gate.in_use
    release.set()
    assert (await holder, [type(r) for r in results], busy, gate.in_use, gate.queued) == (
        "done",
        [BulkheadFullError, BulkheadFullError],
        1,
        0,
        0,
    )


def test_reset_refills_retry_budgets(clock: FakeClock) -> None:
    """A spent RetryBudget is full again, and refills from the reset on."""
    budget = RetryBudget(ratio=0.5, min_per_second=0.0, capacity_calls=4, clock=clock)
    while budget.try_withdraw():
        pass
    reset_policies()
    assert budget.balance == 2.0


def test_reset_of_an_idle_bulkhead_changes_nothing() -> None:
    """A bulkhead with nothing running or queued stays as it was."""
    gate = bulkhead(2)
    gate.reset()
    assert (gate.in_use, gate.queued) == (0, 0)


def test_tracking_keeps_nothing_alive() -> None:
    """Policies are tracked weakly: a breaker, bulkhead or budget nobody holds is freed."""
    made: list[Any] = [circuit_breaker(), bulkhead(1), RetryBudget()]
    refs = [weakref.ref(p) for p in made]
    del made
    gc.collect()
    assert [r() for r in refs] == [None, None, None]
    reset_policies()  # and resetting after they are gone is fine


def test_reset_refills_an_idle_rate_limiter(clock: FakeClock) -> None:
    """A rate limiter whose burst is spent admits again after a reset (nobody was waiting)."""
    limiter = rate_limiter(1, per=60.0, burst=1, clock=clock)
    limiter.call(lambda: None)
    with pytest.raises(RateLimitedError):
        limiter.call(lambda: None)
    reset_policies()
    assert limiter.call(lambda: "again") == "again"
