"""A handler raising KeyboardInterrupt at every emission site: it propagates, and leaks nothing.

Each test subscribes a sync handler that raises ``KeyboardInterrupt`` the
first time it sees one event type, drives a policy through the step that
emits it, checks the interrupt came out as the same object, then checks the
policy still works: no permit, slot, probe or deadline left behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import resilient
from resilient import (
    BulkheadFullError,
    CircuitOpenError,
    CircuitState,
    EventBus,
    TimeoutExceededError,
    bulkhead,
    circuit_breaker,
    fallback,
    pipeline,
    retry,
    timeout,
)
from resilient.backends import MemoryBackend
from resilient.events import (
    BulkheadRejected,
    CallFailed,
    CallSucceeded,
    CircuitClosed,
    CircuitHalfOpened,
    CircuitIsolated,
    CircuitOpened,
    CircuitRejected,
    Event,
    FallbackUsed,
    RetriesExhausted,
    RetryScheduled,
    TimeoutElapsed,
)
from resilient.testing import FakeClock


class Interrupt:
    """A sync handler that raises KeyboardInterrupt the first time it sees an event of *kind*."""

    def __init__(self, kind: type[Event]) -> None:
        self.kind = kind
        self.raised: KeyboardInterrupt | None = None

    def __call__(self, event: Event) -> None:
        if self.raised is None and isinstance(event, self.kind):
            self.raised = KeyboardInterrupt(f"handler of {self.kind.__name__}")
            raise self.raised


async def step(
    interrupt: Interrupt, action: Callable[[], Awaitable[Any]], *expected: type[BaseException]
) -> Any:
    """Await *action*; let through only *expected* exceptions and this handler's own interrupt."""
    try:
        return await action()
    except KeyboardInterrupt as exc:
        if exc is not interrupt.raised:
            raise  # not the handler's
    except expected:
        pass
    return None


class RemoteMemory(MemoryBackend):
    """The memory backend, driven through the async steps a network backend uses."""

    nonblocking = False


# --- circuit breaker ----------------------------------------------------------------------

FORMS = ["sync", "async", "async-remote", "with", "async-with"]


def breaker_call(breaker: Any, form: str) -> Callable[[bool], Awaitable[str]]:
    """A call through *breaker* in one of its forms; ``fail`` makes the protected code raise."""

    async def call(fail: bool) -> str:
        def body() -> str:
            if fail:
                raise ConnectionError("down")
            return "ok"

        async def abody() -> str:
            return body()

        if form == "sync":
            return breaker.call(body)  # type: ignore[no-any-return]
        if form in ("async", "async-remote"):
            return await breaker.call(abody)  # type: ignore[no-any-return]
        if form == "with":
            with breaker:
                return body()
        async with breaker:
            return body()

    return call


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("kind", [CircuitOpened, CircuitRejected, CircuitHalfOpened, CircuitClosed])
async def test_breaker_survives_interrupting_handler(clock: FakeClock, form: str, kind: type[Event]) -> None:
    """A handler interrupting any breaker event leaves it working: never stuck HALF_OPEN, no probe held."""
    bus = EventBus()
    interrupt = Interrupt(kind)
    bus.subscribe(interrupt)
    backend = RemoteMemory() if form == "async-remote" else MemoryBackend()
    breaker = circuit_breaker(failure_threshold=1, recovery_timeout=10, backend=backend, clock=clock, bus=bus)
    call = breaker_call(breaker, form)

    await step(interrupt, lambda: call(True), ConnectionError)  # opens
    await step(interrupt, lambda: call(False), CircuitOpenError)  # rejected
    clock.advance(10)
    await step(interrupt, lambda: call(False))  # probe: half-open, then closed
    assert interrupt.raised is not None

    clock.advance(10)
    assert await call(False) == "ok"  # admitted: no probe slot was leaked
    assert breaker.state is CircuitState.CLOSED
    assert breaker.stats().probes_in_flight == 0


async def test_breaker_survives_interrupting_handler_on_state_isolate_and_reset(clock: FakeClock) -> None:
    """Interrupts on the events of `state`, `isolate()` and `reset()` leave consistent states."""
    bus = EventBus()
    breaker = circuit_breaker(failure_threshold=1, recovery_timeout=10, clock=clock, bus=bus)
    call = breaker_call(breaker, "sync")
    for kind, action in [
        (CircuitIsolated, breaker.isolate),
        (CircuitClosed, breaker.reset),
    ]:
        interrupt = Interrupt(kind)
        with bus.subscribe(interrupt), pytest.raises(KeyboardInterrupt):
            action()
    assert breaker.state is CircuitState.CLOSED
    with pytest.raises(ConnectionError):
        await call(True)
    clock.advance(10)
    interrupt = Interrupt(CircuitHalfOpened)
    with bus.subscribe(interrupt), pytest.raises(KeyboardInterrupt):
        breaker.state  # noqa: B018 - reading it moves OPEN to HALF_OPEN
    assert await call(False) == "ok"
    assert breaker.state is CircuitState.CLOSED


# --- bulkhead -----------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["sync", "async", "with", "async-with"])
async def test_bulkhead_full_rejection_interrupted_leaks_no_slot(form: str) -> None:
    """An interrupt on BulkheadRejected (full, no queue) leaves in_use and queued at zero afterwards."""
    bus = EventBus()
    interrupt = Interrupt(BulkheadRejected)
    bus.subscribe(interrupt)
    guard = bulkhead(1, bus=bus)

    async def call() -> str:
        if form == "sync":
            return guard.call(lambda: "ok")
        if form == "async":

            async def ok() -> str:
                return "ok"

            return await guard.call(ok)
        if form == "with":
            with guard:
                return "ok"
        async with guard:
            return "ok"

    async with guard:  # holds the only slot
        await step(interrupt, call, BulkheadFullError)
        assert guard.in_use == 1
    assert interrupt.raised is not None
    assert (guard.in_use, guard.queued) == (0, 0)
    assert await call() == "ok"
    assert (guard.in_use, guard.queued) == (0, 0)


async def test_bulkhead_queue_timeout_interrupted_leaks_no_slot(clock: FakeClock) -> None:
    """An interrupt on the BulkheadRejected of a queue timeout leaves the queue empty and the slot free."""
    bus = EventBus()
    interrupt = Interrupt(BulkheadRejected)
    bus.subscribe(interrupt)
    guard = bulkhead(1, max_queue=1, queue_timeout=1, clock=clock, bus=bus)

    async def ok() -> str:
        return "ok"

    async def waiter() -> Any:
        # The interrupt is caught inside the task: escaping a task, it would stop the loop.
        return await step(interrupt, lambda: guard.call(ok), BulkheadFullError)

    async with guard:
        task = asyncio.create_task(waiter())
        for _ in range(10):
            await asyncio.sleep(0)
        assert guard.queued == 1
        clock.advance(1)
        await task
    assert interrupt.raised is not None
    assert (guard.in_use, guard.queued) == (0, 0)
    assert await guard.call(ok) == "ok"


# --- retry, timeout, fallback, pipeline ---------------------------------------------------


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("kind", [RetryScheduled, RetriesExhausted])
async def test_retry_interrupted_stops_retrying(clock: FakeClock, is_async: bool, kind: type[Event]) -> None:
    """An interrupt on a retry event propagates at once (no further attempt); the policy works afterwards."""
    bus = EventBus()
    interrupt = Interrupt(kind)
    bus.subscribe(interrupt)
    policy = retry(attempts=2, backoff=0, clock=clock, bus=bus)
    attempts = 0

    def fails() -> str:
        nonlocal attempts
        attempts += 1
        raise ConnectionError

    async def afails() -> str:
        return fails()

    async def call() -> str:
        return await policy.call(afails) if is_async else policy.call(fails)

    with pytest.raises(KeyboardInterrupt) as info:
        await call()
    assert info.value is interrupt.raised
    assert attempts == (1 if kind is RetryScheduled else 2)
    with pytest.raises(ConnectionError):
        await call()
    assert attempts == (3 if kind is RetryScheduled else 4)


async def test_timeout_interrupted_restores_task_and_deadline(clock: FakeClock) -> None:
    """An interrupt on TimeoutElapsed leaves no cancellation request and no deadline behind."""
    bus = EventBus()
    interrupt = Interrupt(TimeoutElapsed)
    bus.subscribe(interrupt)
    policy = timeout(1, clock=clock, bus=bus)
    task = asyncio.current_task()
    assert task is not None

    with pytest.raises(KeyboardInterrupt) as info:
        await policy.call(clock.sleep, 5)
    assert info.value is interrupt.raised
    assert task.cancelling() == 0
    assert resilient.remaining() is None
    with pytest.raises(TimeoutExceededError):
        await policy.call(clock.sleep, 5)
    await policy.call(clock.sleep, 0.5)  # within the time: no error


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_fallback_interrupted_propagates(is_async: bool) -> None:
    """An interrupt on FallbackUsed propagates instead of the fallback value; the policy works afterwards."""
    bus = EventBus()
    interrupt = Interrupt(FallbackUsed)
    bus.subscribe(interrupt)
    policy = fallback("default", bus=bus)

    def fails() -> str:
        raise ConnectionError

    async def afails() -> str:
        return fails()

    async def call() -> str:
        return await policy.call(afails) if is_async else policy.call(fails)

    with pytest.raises(KeyboardInterrupt) as info:
        await call()
    assert info.value is interrupt.raised
    assert await call() == "default"


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("kind", [CallSucceeded, CallFailed])
async def test_pipeline_call_event_interrupted_leaks_nothing(
    clock: FakeClock, is_async: bool, kind: type[Event]
) -> None:
    """An interrupt on CallSucceeded/CallFailed comes after every inner policy let go of its slot or probe."""
    bus = EventBus()
    interrupt = Interrupt(kind)
    bus.subscribe(interrupt)
    guard = bulkhead(1, bus=bus)
    breaker = circuit_breaker(failure_threshold=1, recovery_timeout=10, clock=clock, bus=bus)
    policy = pipeline(retry(attempts=1, bus=bus), breaker, guard, bus=bus)
    fail = kind is CallFailed

    def body() -> str:
        if fail:
            raise ConnectionError
        return "ok"

    async def abody() -> str:
        return body()

    async def call() -> str:
        return await policy.call(abody) if is_async else policy.call(body)

    await step(interrupt, call, ConnectionError)
    assert interrupt.raised is not None
    assert guard.in_use == 0
    fail = False
    clock.advance(10)
    assert await call() == "ok"
    assert (guard.in_use, breaker.state) == (0, CircuitState.CLOSED)
