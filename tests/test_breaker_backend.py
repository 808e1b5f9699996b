"""The breaker backend interface: which steps the breaker calls, and the memory backend's contract."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import pytest

from resilient import CircuitOpenError, CircuitState, circuit_breaker
from resilient.backends import (
    BreakerBackend,
    BreakerConfig,
    MemoryBackend,
    Outcome,
    Permit,
    Rejection,
    Transition,
)
from resilient.testing import FakeClock


class Boom(Exception):
    """The dependency's failure in these tests."""


class RemoteLike(MemoryBackend):
    """A backend that, like a networked one, must be awaited from async code; logs each step."""

    nonblocking: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self.log: list[str] = []

    async def acquire_async(self) -> Permit | Rejection:
        self.log.append("acquire_async")
        await asyncio.sleep(0)
        return self.acquire()

    async def record_async(self, permit: Permit, outcome: Outcome) -> Transition | None:
        self.log.append(f"record_async:{outcome.name}")
        await asyncio.sleep(0)
        return self.record(permit, outcome)

    async def release_async(self, permit: Permit) -> None:
        self.log.append("release_async")
        await asyncio.sleep(0)
        self.release(permit)


async def test_async_calls_use_async_steps(clock: FakeClock) -> None:
    """With a blocking backend, async calls go through acquire_async and record_async/release_async."""
    backend = RemoteLike()
    breaker = circuit_breaker(backend=backend, ignore=KeyError, clock=clock)

    @breaker
    async def work(exc: Exception | None) -> None:
        if exc is not None:
            raise exc

    await work(None)
    with pytest.raises(Boom):
        await work(Boom())
    with pytest.raises(KeyError):
        await work(KeyError())
    assert backend.log == [
        "acquire_async",
        "record_async:SUCCESS",
        "acquire_async",
        "record_async:FAILURE",
        "acquire_async",
        "release_async",
    ]


async def test_async_with_uses_async_steps(clock: FakeClock) -> None:
    """`async with` on a blocking backend awaits the async steps."""
    backend = RemoteLike()
    breaker = circuit_breaker(backend=backend, clock=clock)
    async with breaker:
        pass
    assert backend.log == ["acquire_async", "record_async:SUCCESS"]


async def test_cancelled_call_releases_through_async_step(clock: FakeClock) -> None:
    """A cancelled call on a blocking backend frees its permit with release_async."""
    backend = RemoteLike()
    breaker = circuit_breaker(backend=backend, clock=clock)

    @breaker
    async def hang() -> None:
        await asyncio.Event().wait()

    task = asyncio.create_task(hang())
    for _ in range(3):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert backend.log == ["acquire_async", "release_async"]


def test_sync_calls_use_sync_steps(clock: FakeClock) -> None:
    """Sync calls never touch the async steps."""
    backend = RemoteLike()
    breaker = circuit_breaker(backend=backend, clock=clock)
    breaker.call(lambda: None)
    assert backend.log == []


async def test_async_object_api(clock: FakeClock) -> None:
    """isolate_async, state_async and reset_async drive the backend's async steps."""
    breaker = circuit_breaker(clock=clock)
    await breaker.isolate_async()
    isolated = await breaker.state_async()
    await breaker.reset_async()
    assert (isolated, await breaker.state_async()) == (CircuitState.ISOLATED, CircuitState.CLOSED)


async def test_remote_probe_failure_reopens(clock: FakeClock) -> None:
    """The breaker logic works unchanged on a blocking backend: open, reject, probe, re-open."""
    breaker = circuit_breaker(failure_threshold=1, recovery_timeout=3, backend=RemoteLike(), clock=clock)

    @breaker
    async def fail() -> None:
        raise Boom

    with pytest.raises(Boom):
        await fail()
    with pytest.raises(CircuitOpenError):
        await fail()
    clock.advance(3)
    with pytest.raises(Boom):
        await fail()
    assert breaker.state is CircuitState.OPEN


# --- the memory backend's contract ---------------------------------------------------------


def bound(clock: FakeClock, **config: object) -> MemoryBackend:
    """A MemoryBackend bound to *config*."""
    backend = MemoryBackend()
    backend.bind(BreakerConfig(**config), clock)  # type: ignore[arg-type]
    return backend


def test_closed_admission_shares_one_permit(clock: FakeClock) -> None:
    """Every CLOSED admission of one generation returns the same permit object (no allocation)."""
    backend = bound(clock)
    assert backend.acquire() is backend.acquire()


def test_stale_permit_changes_nothing(clock: FakeClock) -> None:
    """Recording a permit from an older generation returns None and counts nothing."""
    backend = bound(clock, failure_threshold=1)
    old = backend.acquire()
    assert isinstance(old, Permit)
    backend.reset()
    assert (backend.record(old, Outcome.FAILURE), backend.state()[0]) == (None, CircuitState.CLOSED)


def test_transition_returned_once(clock: FakeClock) -> None:
    """The opening failure returns the CLOSED -> OPEN transition; nothing else returns it again."""
    backend = bound(clock, failure_threshold=1)
    permit = backend.acquire()
    assert isinstance(permit, Permit)
    first = backend.record(permit, Outcome.FAILURE)
    again = backend.record(permit, Outcome.FAILURE)
    assert (first, again) == (Transition(CircuitState.CLOSED, CircuitState.OPEN), None)


def test_open_rejection_carries_time_left(clock: FakeClock) -> None:
    """An OPEN backend refuses with the seconds left until HALF_OPEN."""
    backend = bound(clock, failure_threshold=1, recovery_timeout=8.0)
    permit = backend.acquire()
    assert isinstance(permit, Permit)
    backend.record(permit, Outcome.FAILURE)
    clock.advance(3)
    refused = backend.acquire()
    assert isinstance(refused, Rejection)
    assert (refused.state, refused.retry_after) == (CircuitState.OPEN, 5.0)


def test_half_open_admission_reports_its_transition(clock: FakeClock) -> None:
    """The first admission after the recovery timeout is a probe carrying OPEN -> HALF_OPEN."""
    backend = bound(clock, failure_threshold=1, recovery_timeout=1.0)
    permit = backend.acquire()
    assert isinstance(permit, Permit)
    backend.record(permit, Outcome.FAILURE)
    clock.advance(1)
    probe = backend.acquire()
    assert isinstance(probe, Permit)
    assert (probe.probe, probe.transition) == (True, Transition(CircuitState.OPEN, CircuitState.HALF_OPEN))


def test_unbound_backend_refuses_time_reads() -> None:
    """A MemoryBackend used before bind() says so instead of misbehaving."""
    backend = MemoryBackend()
    permit = backend.acquire()
    assert isinstance(permit, Permit)
    with pytest.raises(RuntimeError, match="bind"):
        backend.record(permit, Outcome.FAILURE)


def test_backend_interface_is_abstract() -> None:
    """BreakerBackend cannot be instantiated without its steps."""
    with pytest.raises(TypeError):
        BreakerBackend()  # type: ignore[abstract]


async def test_default_async_steps_call_sync_ones(clock: FakeClock) -> None:
    """The base class's async steps delegate to the sync ones."""
    backend = bound(clock, failure_threshold=1)
    permit = await backend.acquire_async()
    assert isinstance(permit, Permit)
    await backend.release_async(permit)
    opened = await backend.record_async(permit, Outcome.FAILURE)
    isolated = await backend.isolate_async()
    state, _ = await backend.state_async()
    closed = await backend.reset_async()
    assert [t.state if t else None for t in (opened, isolated, closed)] == [
        CircuitState.OPEN,
        CircuitState.ISOLATED,
        CircuitState.CLOSED,
    ]
    assert state is CircuitState.ISOLATED


def test_a_subclass_that_overrides_steps_sees_every_call() -> None:
    """A MemoryBackend subclass overriding acquire/record gets no fast path that skips them."""
    from resilient import circuit_breaker
    from resilient.backends import MemoryBackend

    class Counting(MemoryBackend):
        def __init__(self) -> None:
            super().__init__()
            self.steps = 0

        def acquire(self) -> Permit | Rejection:
            self.steps += 1
            return super().acquire()

        def record(self, permit: Permit, outcome: Outcome) -> Transition | None:
            self.steps += 1
            return super().record(permit, outcome)

    backend = Counting()
    breaker = circuit_breaker(backend=backend)
    for _ in range(3):
        breaker.call(lambda: None)
    assert backend.quiet_permit is None
    assert backend.steps == 6


def test_the_default_backend_skips_steps_for_quiet_successes() -> None:
    """A CLOSED MemoryBackend with no failure to forget exposes its shared permit for the fast path."""
    from resilient import circuit_breaker
    from resilient.backends import MemoryBackend

    def quiet(b: MemoryBackend) -> object:
        return b.quiet_permit

    backend = MemoryBackend()
    breaker = circuit_breaker(backend=backend, failure_threshold=3)
    breaker.call(lambda: None)
    assert quiet(backend) is not None

    def boom() -> None:
        raise ConnectionError

    with pytest.raises(ConnectionError):
        breaker.call(boom)
    assert quiet(backend) is None  # a success must now reset the count
    breaker.call(lambda: None)
    assert quiet(backend) is not None
