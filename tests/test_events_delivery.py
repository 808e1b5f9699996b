"""Async handler delivery: handler failures, event loops, threads, bounds, drops and drain()."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from freezegun import freeze_time

from resilient import (
    BulkheadFullError,
    CircuitOpenError,
    CircuitState,
    EventBus,
    bulkhead,
    circuit_breaker,
    fallback,
)
from resilient.events import BulkheadRejected, CircuitOpened, Event, FallbackUsed
from resilient.testing import FakeClock


def opened() -> CircuitOpened:
    """A CircuitOpened event built by hand."""
    return CircuitOpened(
        policy="circuit_breaker",
        name="b",
        operation=None,
        time=1.0,
        previous=CircuitState.CLOSED,
        state=CircuitState.OPEN,
    )


def rejected() -> BulkheadRejected:
    """A BulkheadRejected event built by hand."""
    return BulkheadRejected(policy="bulkhead", name=None, operation="op", time=2.0, retry_after=None)


@pytest.fixture
def bus() -> EventBus:
    """A private bus."""
    return EventBus()


@pytest.fixture
def other_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running in a thread of its own; stopped and closed after the test."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    if not loop.is_closed():  # a test may close it itself
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def in_thread(fn: Callable[..., Any], *args: Any) -> None:
    """Run ``fn(*args)`` in a new thread (no event loop) and wait for it, blocking this one."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            fn(*args)
        except BaseException as exc:  # pragma: no cover - reported below
            failure.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(10)
    assert not failure, failure


async def on(loop: asyncio.AbstractEventLoop, coro: Awaitable[Any]) -> Any:
    """Run *coro* on *loop* (another thread's) and await its result from this loop."""
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))  # type: ignore[arg-type]


def resilient_records(
    caplog: pytest.LogCaptureFixture, level: int = logging.WARNING
) -> list[logging.LogRecord]:
    """The log records of the `resilient` logger at *level* or above."""
    return [r for r in caplog.records if r.name == "resilient" and r.levelno >= level]


# --- a handler failing when called never reaches emit()'s caller (issue 10, item 2a) -----


async def wrong_arity() -> None:
    """An async handler that takes no event: calling it with one raises TypeError."""


class Odd:
    """An object that even `inspect.isawaitable` cannot look at."""

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        raise RuntimeError("odd object")


async def test_async_handler_with_wrong_arity_is_logged_not_raised(
    bus: EventBus, caplog: pytest.LogCaptureFixture
) -> None:
    """An async handler whose call raises (wrong arity) is logged; emit() returns and later handlers run."""
    seen: list[Event] = []
    bus.subscribe(wrong_arity)  # type: ignore[arg-type]
    bus.subscribe(seen.append)
    with caplog.at_level(logging.ERROR, logger="resilient"):
        bus.emit(opened())
    assert seen == [opened()]
    [record] = resilient_records(caplog, logging.ERROR)
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], TypeError)
    assert bus.pending == 0


async def test_wrong_arity_handed_over_from_a_thread_is_logged_at_start(
    bus: EventBus, caplog: pytest.LogCaptureFixture
) -> None:
    """A wrong-arity handler's event from a thread is logged when its loop starts it; drain() is quiet."""
    bus.subscribe(wrong_arity)  # type: ignore[arg-type]
    in_thread(bus.emit, opened())
    with caplog.at_level(logging.ERROR, logger="resilient"):
        await bus.drain()
    [record] = resilient_records(caplog, logging.ERROR)
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], TypeError)
    assert bus.pending == 0


def test_wrong_arity_outside_a_loop_is_logged_by_drain(
    bus: EventBus, caplog: pytest.LogCaptureFixture
) -> None:
    """A wrong-arity async handler's event queued outside any loop is logged when drain() starts it."""
    bus.subscribe(wrong_arity)  # type: ignore[arg-type]
    bus.emit(opened())
    with caplog.at_level(logging.ERROR, logger="resilient"):
        asyncio.run(bus.drain())
    errors = [r.exc_info[1] for r in resilient_records(caplog, logging.ERROR) if r.exc_info]
    assert [type(e) for e in errors] == [TypeError]
    assert bus.pending == 0


def _closed_loop_future() -> asyncio.Future[None]:
    loop = asyncio.new_event_loop()
    fut = loop.create_future()
    fut.set_result(None)
    loop.close()
    return fut


@pytest.mark.parametrize(
    "returned",
    [Odd, _closed_loop_future],
    ids=["unknowable-object", "future-of-a-closed-loop"],
)
async def test_sync_handler_returning_something_odd_is_logged(
    bus: EventBus, caplog: pytest.LogCaptureFixture, returned: Callable[[], object]
) -> None:
    """A sync handler returning an object the bus cannot handle is logged; emit() returns normally."""
    seen: list[Event] = []
    bus.subscribe(lambda e: returned())
    bus.subscribe(seen.append)
    with caplog.at_level(logging.ERROR, logger="resilient"):
        bus.emit(opened())
    assert seen == [opened()]
    assert len(resilient_records(caplog, logging.ERROR)) == 1
    assert bus.pending == 0


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_wrong_arity_handler_changes_no_call_outcome(
    clock: FakeClock, caplog: pytest.LogCaptureFixture, is_async: bool
) -> None:
    """With a wrong-arity async handler on every event, fallbacks, rejections and successes are unchanged."""
    bus = EventBus()
    bus.subscribe(wrong_arity)  # type: ignore[arg-type]
    breaker = circuit_breaker(failure_threshold=1, recovery_timeout=5, clock=clock, bus=bus)
    guard = bulkhead(1, bus=bus)

    def fails() -> str:
        raise ConnectionError

    async def afails() -> str:
        raise ConnectionError

    def ok() -> str:
        return "ok"

    async def aok() -> str:
        return "ok"

    async def run(policy: Any, sync_fn: Callable[[], str], async_fn: Callable[[], Awaitable[str]]) -> str:
        return await policy.call(async_fn) if is_async else policy.call(sync_fn)  # type: ignore[no-any-return]

    with caplog.at_level(logging.CRITICAL, logger="resilient"):
        assert await run(fallback("default", bus=bus), fails, afails) == "default"
        assert await run(breaker, ok, aok) == "ok"
        with pytest.raises(ConnectionError):
            await run(breaker, fails, afails)
        with pytest.raises(CircuitOpenError):
            await run(breaker, ok, aok)
        clock.advance(5)
        assert await run(breaker, ok, aok) == "ok"
        async with guard:
            with pytest.raises(BulkheadFullError):
                await run(guard, ok, aok)
    assert guard.in_use == 0


def test_broken_logging_filter_does_not_reach_emit(bus: EventBus) -> None:
    """Even a logging filter that raises while a handler failure is reported stays inside the bus."""

    class Broken(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            raise RuntimeError("broken filter")

    log = logging.getLogger("resilient")
    broken = Broken()
    log.addFilter(broken)
    try:
        bus.subscribe(lambda e: 1 / 0)
        bus.emit(opened())
    finally:
        log.removeFilter(broken)


def test_handler_interrupting_when_called_propagates_and_releases_its_runs(bus: EventBus) -> None:
    """A KeyboardInterrupt from calling an async handler propagates from drain(); nothing stays counted."""

    class Handler:
        async def __call__(self, event: Event) -> None:
            pass

    bus.subscribe(Handler())
    bus.emit(opened())
    bus.emit(opened())
    assert bus.pending == 2

    def interrupt(self: Handler, event: Event) -> None:
        raise KeyboardInterrupt

    Handler.__call__ = interrupt  # type: ignore[method-assign,assignment]
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(bus.drain())
    assert bus.pending == 0


# --- drain() and other loops (issue 10, item 3) -------------------------------------------


async def test_drain_does_not_wait_for_another_loops_runs(
    bus: EventBus, other_loop: asyncio.AbstractEventLoop
) -> None:
    """drain() returns without waiting for async handler runs that belong to another event loop."""
    release: list[asyncio.Event] = []

    async def setup() -> None:
        release.append(asyncio.Event())

        async def slow(event: Event) -> None:
            await release[0].wait()

        bus.subscribe(slow)  # its home is other_loop
        bus.emit(opened())

    await on(other_loop, setup())
    await asyncio.wait_for(bus.drain(), 10)
    assert bus.pending == 1  # still running on its own loop

    async def finish() -> None:
        release[0].set()
        await bus.drain()

    await on(other_loop, finish())
    assert bus.pending == 0


async def test_drain_in_each_loop_settles_that_loops_runs(
    bus: EventBus, other_loop: asyncio.AbstractEventLoop
) -> None:
    """Runs on two loops: each loop's drain() waits for its own, and together they leave nothing pending."""
    seen: list[str] = []

    async def here(event: Event) -> None:
        await asyncio.sleep(0)
        seen.append("here")

    bus.subscribe(here)

    async def there_setup() -> None:
        async def there(event: Event) -> None:
            await asyncio.sleep(0)
            seen.append("there")

        bus.subscribe(there)

    await on(other_loop, there_setup())
    bus.emit(opened())  # `here` runs on this loop, `there` is handed to other_loop
    await bus.drain()
    await on(other_loop, bus.drain())
    assert sorted(seen) == ["here", "there"]
    assert bus.pending == 0


# --- events from threads without a loop (issue 10, item 13) -------------------------------


async def test_event_from_a_worker_thread_reaches_the_handlers_loop(bus: EventBus) -> None:
    """An event emitted in asyncio.to_thread reaches the async handler on its own loop, without drain()."""
    seen: list[Event] = []
    arrived = asyncio.Event()

    async def handler(event: Event) -> None:
        seen.append(event)
        arrived.set()

    bus.subscribe(handler, FallbackUsed)

    @fallback(0, bus=bus)
    def work() -> int:
        raise ConnectionError

    assert await asyncio.to_thread(work) == 0
    await asyncio.wait_for(arrived.wait(), 10)  # no drain(): delivered on its own
    assert [type(e) for e in seen] == [FallbackUsed]
    await bus.drain()
    assert bus.pending == 0


async def test_drain_waits_for_runs_handed_to_its_loop(bus: EventBus) -> None:
    """drain() waits for runs handed over from a thread that its loop has not started yet."""
    seen: list[Event] = []

    async def handler(event: Event) -> None:
        seen.append(event)

    bus.subscribe(handler)
    in_thread(bus.emit, opened())
    assert (seen, bus.pending) == ([], 1)
    await bus.drain()
    assert (seen, bus.pending) == ([opened()], 0)


async def test_no_delivery_after_unsubscribe_of_a_handed_over_event(bus: EventBus) -> None:
    """An event handed over from a thread but not started when its handler unsubscribes is never delivered."""
    seen: list[Event] = []

    async def handler(event: Event) -> None:
        seen.append(event)

    subscription = bus.subscribe(handler)
    in_thread(bus.emit, opened())
    subscription.unsubscribe()
    assert bus.pending == 0
    await bus.drain()
    await asyncio.sleep(0)  # let the loop run the hand-over callback too
    assert seen == []


def test_no_delivery_after_unsubscribe_of_an_event_waiting_for_drain(bus: EventBus) -> None:
    """An event queued where no loop runs is not delivered by drain() once its handler unsubscribed."""
    seen: list[Event] = []

    async def handler(event: Event) -> None:
        seen.append(event)

    subscription = bus.subscribe(handler)
    bus.emit(opened())
    assert bus.pending == 1
    subscription.unsubscribe()
    assert bus.pending == 0
    asyncio.run(bus.drain())
    assert seen == []


def test_clear_forgets_queued_runs(bus: EventBus) -> None:
    """clear() also forgets the async runs still waiting to start."""
    seen: list[Event] = []

    async def handler(event: Event) -> None:
        seen.append(event)

    bus.subscribe(handler)
    bus.emit(opened())
    bus.clear()
    asyncio.run(bus.drain())
    assert (seen, bus.pending) == ([], 0)


def test_handler_whose_loop_is_closed_drops_and_counts(
    bus: EventBus, caplog: pytest.LogCaptureFixture
) -> None:
    """An event for an async handler whose loop is closed is dropped, counted and logged, not kept."""
    seen: list[Event] = []

    async def handler(event: Event) -> None:
        seen.append(event)

    async def setup() -> None:
        bus.subscribe(handler)

    asyncio.run(setup())  # the handler's loop is closed when this returns
    with caplog.at_level(logging.WARNING, logger="resilient"):
        bus.emit(opened())
        bus.emit(opened())
    assert (bus.pending, bus.dropped, seen) == (0, 2, [])
    [record] = resilient_records(caplog)
    assert "closed" in record.getMessage()


async def test_runs_handed_to_a_loop_that_closes_are_counted_as_dropped(
    bus: EventBus, other_loop: asyncio.AbstractEventLoop
) -> None:
    """Runs handed to a loop that closes before starting them become drops instead of staying pending."""

    async def setup() -> None:
        async def handler(event: Event) -> None:
            pass

        bus.subscribe(handler)

    await on(other_loop, setup())
    # Stop the loop (it then starts nothing), hand it an event, close it.
    stopped = threading.Event()

    def stop() -> None:
        other_loop.stop()
        stopped.set()

    other_loop.call_soon_threadsafe(stop)
    assert stopped.wait(10)
    while other_loop.is_running():  # pragma: no cover - the stop lands within a loop iteration
        await asyncio.sleep(0)
    bus.emit(opened())
    other_loop.close()
    assert (bus.pending, bus.dropped) == (0, 1)


def test_subscribed_outside_a_loop_warns_once(bus: EventBus, caplog: pytest.LogCaptureFixture) -> None:
    """An async handler with no loop, sent an event where no loop runs, is told once it waits for drain()."""

    async def handler(event: Event) -> None:
        pass

    bus.subscribe(handler)
    with caplog.at_level(logging.WARNING, logger="resilient"):
        bus.emit(opened())
        bus.emit(opened())
    [record] = resilient_records(caplog)
    assert "drain()" in record.getMessage()
    asyncio.run(bus.drain())


# --- the bound on async handler work (issue 10, item 14) ------------------------------------


def test_max_pending_default() -> None:
    """A bus holds at most 10,000 async handler runs by default."""
    assert EventBus().max_pending == 10_000


@pytest.mark.parametrize(
    ("value", "error"),
    [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError), ("9", TypeError)],
)
def test_max_pending_validated(value: Any, error: type[Exception]) -> None:
    """A bad max_pending fails at construction, naming the parameter."""
    with pytest.raises(error, match="max_pending"):
        EventBus(max_pending=value)


async def test_async_runs_bounded_and_drops_counted(bus: EventBus, caplog: pytest.LogCaptureFixture) -> None:
    """Beyond max_pending runs in flight, new deliveries are dropped and counted; the held ones still run."""
    small = EventBus(max_pending=3)
    gate = asyncio.Event()
    seen: list[Event] = []

    async def slow(event: Event) -> None:
        await gate.wait()
        seen.append(event)

    small.subscribe(slow)
    with caplog.at_level(logging.WARNING, logger="resilient"):
        for _ in range(10):
            small.emit(opened())
    assert (small.pending, small.dropped) == (3, 7)
    gate.set()
    await small.drain()
    assert (len(seen), small.pending, small.dropped) == (3, 0, 7)
    small.emit(opened())  # room again
    await small.drain()
    assert (len(seen), small.dropped) == (4, 7)
    [record] = resilient_records(caplog)  # one line, not one per drop
    assert "max_pending=3" in record.getMessage()


async def test_awaitables_from_sync_handlers_count_toward_the_bound(bus: EventBus) -> None:
    """Coroutines returned by sync handlers count toward the bound; the excess is closed, not leaked."""
    small = EventBus(max_pending=1)
    made: list[Any] = []

    async def later() -> None:
        pass

    def handler(event: Event) -> Any:
        made.append(later())
        return made[-1]

    small.subscribe(handler)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(logging.getLogger("resilient"), "disabled", True)
        small.emit(opened())
        small.emit(opened())
    assert (small.pending, small.dropped) == (1, 1)
    assert made[1].cr_frame is None  # closed: no "never awaited" warning
    await small.drain()
    assert small.pending == 0


def test_queue_outside_a_loop_is_bounded(bus: EventBus) -> None:
    """Events for async handlers queued where no loop runs are bounded by max_pending too."""
    small = EventBus(max_pending=2)
    seen: list[Event] = []

    async def handler(event: Event) -> None:
        seen.append(event)

    small.subscribe(handler)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(logging.getLogger("resilient"), "disabled", True)
        for _ in range(5):
            small.emit(opened())
    assert (small.pending, small.dropped) == (2, 3)
    asyncio.run(small.drain())
    assert (len(seen), small.pending) == (2, 0)


def test_drop_log_is_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    """Drops are logged at most once per interval, each line saying how many were dropped since the last."""
    small = EventBus(max_pending=1)

    async def handler(event: Event) -> None:
        pass

    small.subscribe(handler)
    with freeze_time("2024-01-01") as frozen, caplog.at_level(logging.WARNING, logger="resilient"):
        small.emit(opened())  # queued for drain()
        caplog.clear()
        for _ in range(100):
            small.emit(opened())
        first = resilient_records(caplog)
        frozen.tick(5)
        small.emit(opened())
        assert len(resilient_records(caplog)) == 1  # still within the interval
        frozen.tick(10)
        small.emit(opened())
        second = resilient_records(caplog)[1:]
    assert len(first) == 1
    assert "dropped 1 " in first[0].getMessage()
    assert len(second) == 1
    assert "dropped 101 " in second[0].getMessage()
    assert "102 in total" in second[0].getMessage()
    assert small.dropped == 102
    small.clear()


async def test_sync_handlers_unaffected_by_the_bound(bus: EventBus) -> None:
    """Sync handlers run inline for every event whatever the async bound, in order, exactly once."""
    small = EventBus(max_pending=1)
    calls: list[str] = []
    gate = asyncio.Event()

    async def slow(event: Event) -> None:
        await gate.wait()

    small.subscribe(lambda e: calls.append("a"))
    small.subscribe(slow)
    small.subscribe(lambda e: calls.append("b"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(logging.getLogger("resilient"), "disabled", True)
        for _ in range(3):
            small.emit(rejected())
    assert calls == ["a", "b"] * 3
    assert small.dropped == 2
    gate.set()
    await small.drain()


def test_bus_repr_and_types() -> None:
    """The bus's repr is unchanged; its counters are ints."""
    bus = EventBus(max_pending=5)
    bus.subscribe(lambda e: None, CircuitOpened, BulkheadRejected)
    assert repr(bus) == "<EventBus subscriptions=1>"
    assert (bus.pending, bus.dropped, bus.max_pending) == (0, 0, 5)
