"""Events and the bus: subscription, delivery, containment, no allocation without listeners."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import pytest

import resilient
from resilient import EventBus, Subscription, fallback, pipeline, retry, subscribe, timeout
from resilient.events import (
    BulkheadRejected,
    CallFailed,
    CallRejected,
    CallSucceeded,
    CircuitClosed,
    CircuitHalfOpened,
    CircuitIsolated,
    CircuitOpened,
    CircuitRejected,
    CircuitStateChanged,
    Event,
    FallbackUsed,
    RetriesExhausted,
    RetryScheduled,
    TimeoutElapsed,
    default_bus,
)
from resilient.testing import FakeClock, capture_events

State = resilient.CircuitState


def opened(name: str = "b") -> CircuitOpened:
    """A CircuitOpened event built by hand."""
    return CircuitOpened(
        policy="circuit_breaker", name=name, operation=None, time=1.0, previous=State.CLOSED, state=State.OPEN
    )


def rejected() -> BulkheadRejected:
    """A BulkheadRejected event built by hand."""
    return BulkheadRejected(policy="bulkhead", name=None, operation="op", time=2.0, retry_after=None)


@pytest.fixture
def bus() -> EventBus:
    """A private bus."""
    return EventBus()


# --- subscribing ------------------------------------------------------------------------


def test_subscribe_returns_subscription(bus: EventBus) -> None:
    """subscribe() returns an active Subscription."""
    sub = subscribe(lambda e: None, bus=bus)
    assert isinstance(sub, Subscription)
    assert sub.active


def test_no_types_means_all_events(bus: EventBus) -> None:
    """A handler subscribed with no types receives every event."""
    seen: list[Event] = []
    subscribe(seen.append, bus=bus)
    events = [opened(), rejected()]
    for e in events:
        bus.emit(e)
    assert seen == events


def test_types_filter(bus: EventBus) -> None:
    """A handler subscribed to a type receives only that type."""
    seen: list[Event] = []
    subscribe(seen.append, BulkheadRejected, bus=bus)
    bus.emit(opened())
    bus.emit(rejected())
    assert seen == [rejected()]


@pytest.mark.parametrize(
    ("base", "event"),
    [
        (CircuitStateChanged, opened()),
        (CallRejected, rejected()),
        (Event, opened()),
    ],
    ids=["state-changed", "rejected", "event"],
)
def test_base_class_matches_subclasses(bus: EventBus, base: type[Event], event: Event) -> None:
    """Subscribing to a base class delivers its subclasses."""
    seen: list[Event] = []
    subscribe(seen.append, base, bus=bus)
    bus.emit(event)
    assert seen == [event]


def test_several_types(bus: EventBus) -> None:
    """A handler may list several types."""
    seen: list[Event] = []
    subscribe(seen.append, CircuitOpened, BulkheadRejected, bus=bus)
    bus.emit(opened())
    bus.emit(rejected())
    assert len(seen) == 2


def test_unsubscribe_stops_delivery(bus: EventBus) -> None:
    """After unsubscribe() the handler receives nothing, and a second unsubscribe is harmless."""
    seen: list[Event] = []
    sub = subscribe(seen.append, bus=bus)
    sub.unsubscribe()
    sub.unsubscribe()
    bus.emit(opened())
    assert (seen, sub.active) == ([], False)


def test_subscription_context_manager(bus: EventBus) -> None:
    """Used in `with`, a subscription delivers inside the block and stops after it."""
    seen: list[Event] = []
    with subscribe(seen.append, bus=bus) as sub:
        bus.emit(opened())
    bus.emit(opened("other"))
    assert (seen, sub.active) == ([opened()], False)


def test_subscribe_default_bus() -> None:
    """subscribe() without bus= listens on resilient.events.default_bus."""
    seen: list[Event] = []
    with subscribe(seen.append):
        default_bus.emit(opened())
    assert seen == [opened()]


def test_bus_subscribe_method(bus: EventBus) -> None:
    """EventBus.subscribe is the method form of subscribe()."""
    seen: list[Event] = []
    with bus.subscribe(seen.append, CircuitOpened):
        bus.emit(opened())
    assert seen == [opened()]


def test_subscribe_rejects_non_callable(bus: EventBus) -> None:
    """A handler that is not callable raises TypeError naming the handler."""
    with pytest.raises(TypeError, match="handler"):
        subscribe(42, bus=bus)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [int, ValueError, "CircuitOpened", object()], ids=repr)
def test_subscribe_rejects_non_event_types(bus: EventBus, bad: Any) -> None:
    """Event types that are not Event classes raise TypeError."""
    with pytest.raises(TypeError, match="event_types"):
        subscribe(lambda e: None, bad, bus=bus)


# --- delivery ---------------------------------------------------------------------------


def test_sync_handlers_in_subscription_order_once(bus: EventBus) -> None:
    """Sync handlers run inline, in subscription order, exactly once per event."""
    calls: list[str] = []
    subscribe(lambda e: calls.append("a"), bus=bus)
    subscribe(lambda e: calls.append("b"), CircuitStateChanged, bus=bus)
    subscribe(lambda e: calls.append("c"), CircuitOpened, bus=bus)
    bus.emit(opened())
    assert calls == ["a", "b", "c"]


def test_same_handler_twice_runs_twice(bus: EventBus) -> None:
    """Subscribing one handler twice gives two subscriptions."""
    seen: list[Event] = []
    subscribe(seen.append, bus=bus)
    subscribe(seen.append, bus=bus)
    bus.emit(opened())
    assert len(seen) == 2


def test_handler_unsubscribing_itself_during_delivery(bus: EventBus) -> None:
    """A handler that unsubscribes itself while an event is delivered does not stop the others."""
    calls: list[str] = []
    sub: Subscription

    def once(event: Event) -> None:
        calls.append("once")
        sub.unsubscribe()

    sub = subscribe(once, bus=bus)
    subscribe(lambda e: calls.append("other"), bus=bus)
    bus.emit(opened())
    bus.emit(opened())
    assert calls == ["once", "other", "other"]


async def test_async_handler_runs_as_task_held_by_bus(bus: EventBus) -> None:
    """An async handler is scheduled as a task the bus holds until drain()."""
    seen: list[Event] = []
    gate = asyncio.Event()

    async def handler(event: Event) -> None:
        await gate.wait()
        seen.append(event)

    subscribe(handler, bus=bus)
    bus.emit(opened())
    assert (seen, bus.pending) == ([], 1)
    gate.set()
    await bus.drain()
    assert (seen, bus.pending) == ([opened()], 0)


async def test_async_callable_object_handler(bus: EventBus) -> None:
    """An object with `async def __call__` is an async handler."""
    seen: list[Event] = []

    class Handler:
        async def __call__(self, event: Event) -> None:
            seen.append(event)

    subscribe(Handler(), bus=bus)
    bus.emit(opened())
    await bus.drain()
    assert seen == [opened()]


async def test_sync_handler_returning_awaitable_is_tracked(bus: EventBus) -> None:
    """A sync handler that returns a coroutine has it run and awaited by drain()."""
    seen: list[Event] = []

    async def later(event: Event) -> None:
        seen.append(event)

    subscribe(lambda e: later(e), bus=bus)
    bus.emit(opened())
    await bus.drain()
    assert seen == [opened()]


def test_async_handler_outside_loop_runs_on_drain(bus: EventBus) -> None:
    """An event emitted where no loop runs reaches async handlers when drain() is awaited."""
    seen: list[Event] = []

    async def handler(event: Event) -> None:
        seen.append(event)

    subscribe(handler, bus=bus)
    bus.emit(opened())
    assert (seen, bus.pending) == ([], 1)
    asyncio.run(bus.drain())
    assert (seen, bus.pending) == ([opened()], 0)


async def test_drain_waits_for_events_emitted_by_handlers(bus: EventBus) -> None:
    """drain() also waits for async handler runs started while draining."""
    seen: list[Event] = []

    async def relay(event: Event) -> None:
        await asyncio.sleep(0)
        if isinstance(event, CircuitOpened):
            bus.emit(rejected())

    async def record(event: Event) -> None:
        seen.append(event)

    subscribe(relay, bus=bus)
    subscribe(record, BulkheadRejected, bus=bus)
    bus.emit(opened())
    await bus.drain()
    assert seen == [rejected()]


async def test_drain_with_nothing_pending(bus: EventBus) -> None:
    """drain() returns at once when no async handler is running."""
    await asyncio.wait_for(bus.drain(), 10)
    assert bus.pending == 0


# --- failing handlers ---------------------------------------------------------------------


def test_sync_handler_error_logged_and_contained(bus: EventBus, caplog: pytest.LogCaptureFixture) -> None:
    """A sync handler that raises is logged on the `resilient` logger and later handlers still run."""
    seen: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("handler bug")

    subscribe(broken, bus=bus)
    subscribe(seen.append, bus=bus)
    with caplog.at_level(logging.ERROR, logger="resilient"):
        bus.emit(opened())
    assert seen == [opened()]
    [record] = [r for r in caplog.records if r.name == "resilient"]
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)


async def test_async_handler_error_logged(bus: EventBus, caplog: pytest.LogCaptureFixture) -> None:
    """An async handler that raises is logged on the `resilient` logger; drain() does not raise."""

    async def broken(event: Event) -> None:
        raise RuntimeError("async handler bug")

    subscribe(broken, bus=bus)
    with caplog.at_level(logging.ERROR, logger="resilient"):
        bus.emit(opened())
        await bus.drain()
    [record] = [r for r in caplog.records if r.name == "resilient"]
    assert record.exc_info is not None
    assert str(record.exc_info[1]) == "async handler bug"


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_handler_error_does_not_change_outcome(
    clock: FakeClock, caplog: pytest.LogCaptureFixture, is_async: bool
) -> None:
    """Handlers raising on every event change neither the result nor the exception of a call."""
    bus = EventBus()
    subscribe(lambda e: 1 / 0, bus=bus)
    calls = 0

    def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError
        return "ok"

    async def aflaky() -> str:
        return flaky()

    r = retry(attempts=2, backoff=1, clock=clock, bus=bus)
    with caplog.at_level(logging.CRITICAL, logger="resilient"):
        result = await r.call(aflaky) if is_async else r.call(flaky)
    assert (result, calls) == ("ok", 2)


async def test_handler_error_keeps_original_exception(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """With a raising handler, a failing call still raises its own exception object."""
    bus = EventBus()
    subscribe(lambda e: 1 / 0, bus=bus)
    boom = KeyError("boom")

    async def fails() -> None:
        raise boom

    with caplog.at_level(logging.CRITICAL, logger="resilient"), pytest.raises(KeyError) as info:
        await retry(attempts=2, backoff=0, clock=clock, bus=bus).call(fails)
    assert info.value is boom


# --- no allocation without subscribers --------------------------------------------------

EMITTED = (RetryScheduled, RetriesExhausted, TimeoutElapsed, FallbackUsed, CallSucceeded, CallFailed)


@pytest.fixture
def constructed(monkeypatch: pytest.MonkeyPatch) -> list[type[Event]]:
    """Record every construction of the events the core policies emit."""
    made: list[type[Event]] = []
    for cls in EMITTED:
        original: Callable[..., None] = cls.__init__

        def spy(self: Event, *args: Any, __original: Callable[..., None] = original, **kwargs: Any) -> None:
            made.append(type(self))
            __original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__init__", spy)
    return made


async def exercise(clock: FakeClock, bus: EventBus | None = None) -> None:
    """Run calls that would emit every core event: retries, exhaustion, expiry, fallback."""

    async def fails() -> None:
        raise ValueError

    @fallback("fallback", bus=bus)
    @timeout(1, clock=clock, bus=bus)
    async def slow() -> str:
        await clock.sleep(5)
        return "slow"

    with pytest.raises(ValueError):
        await retry(attempts=2, backoff=0.1, clock=clock, bus=bus).call(fails)
    assert await slow() == "fallback"
    await pipeline(retry(clock=clock, bus=bus), bus=bus).call(clock.sleep, 0)


async def test_no_event_built_without_subscribers(clock: FakeClock, constructed: list[type[Event]]) -> None:
    """With nobody subscribed, no event object is constructed at all."""
    await exercise(clock)
    assert constructed == []


async def test_no_event_built_for_unsubscribed_types(
    clock: FakeClock, constructed: list[type[Event]]
) -> None:
    """A subscriber to other event types causes no construction of the types nobody listens to."""
    with subscribe(lambda e: None, CircuitStateChanged, CallRejected):
        await exercise(clock)
    assert constructed == []


async def test_spy_sees_events_when_subscribed(clock: FakeClock, constructed: list[type[Event]]) -> None:
    """With a subscriber for everything, every core event is constructed (the spy works)."""
    with subscribe(lambda e: None):
        await exercise(clock)
    assert set(constructed) == set(EMITTED)


async def test_only_subscribed_type_built(clock: FakeClock, constructed: list[type[Event]]) -> None:
    """Subscribing to one type constructs only events of that type."""
    with subscribe(lambda e: None, RetryScheduled):
        await exercise(clock)
    assert set(constructed) == {RetryScheduled}


# --- bus= on every policy -------------------------------------------------------------------


def factories(clock: FakeClock) -> dict[str, Callable[[EventBus], Any]]:
    """Each public factory called with bus= (policies added by other modules included when present)."""
    made: dict[str, Callable[[EventBus], Any]] = {
        "retry": lambda b: retry(clock=clock, bus=b),
        "timeout": lambda b: timeout(1, clock=clock, bus=b),
        "fallback": lambda b: fallback(None, bus=b),
        "pipeline": lambda b: pipeline(retry(clock=clock), bus=b),
    }
    breaker = getattr(resilient, "circuit_breaker", None)
    if breaker is not None:
        made["circuit_breaker"] = lambda b: breaker(clock=clock, bus=b)
    bulkhead = getattr(resilient, "bulkhead", None)
    if bulkhead is not None:
        made["bulkhead"] = lambda b: bulkhead(1, clock=clock, bus=b)
    return made


def test_every_factory_takes_bus(clock: FakeClock) -> None:
    """Every policy factory and pipeline() accept bus= and keep it."""
    bus = EventBus()
    assert {name: make(bus).bus is bus for name, make in factories(clock).items()} == dict.fromkeys(
        factories(clock), True
    )


def test_default_bus_when_none(clock: FakeClock) -> None:
    """Without bus= a policy emits on the default bus."""
    assert retry(clock=clock).bus is default_bus


async def test_events_go_to_the_given_bus_only(clock: FakeClock) -> None:
    """Policies with bus= emit there, call events included, and nothing on the default bus."""
    bus = EventBus()
    with capture_events() as on_default, capture_events(bus=bus) as on_private:
        await exercise(clock, bus)
    assert (on_default, {type(e) for e in on_private}) == ([], set(EMITTED))


async def test_implicit_pipeline_uses_policy_bus(clock: FakeClock) -> None:
    """A decorated function's call events go to its first policy's bus when none was given to a pipeline."""
    bus = EventBus()
    with capture_events() as on_default, capture_events(bus=bus) as on_private:
        await retry(clock=clock, bus=bus).call(clock.sleep, 0)
    assert (on_default, [type(e) for e in on_private]) == ([], [CallSucceeded])


async def test_explicit_pipeline_bus_wins(clock: FakeClock) -> None:
    """pipeline(bus=...) receives the call events even when its policies use another bus."""
    policy_bus, pipeline_bus = EventBus(), EventBus()
    p = pipeline(retry(clock=clock, bus=policy_bus), bus=pipeline_bus)
    with capture_events(bus=policy_bus) as on_policy, capture_events(bus=pipeline_bus) as on_pipeline:
        await p.call(clock.sleep, 0)
    assert (on_policy, [type(e) for e in on_pipeline]) == ([], [CallSucceeded])


def test_bad_bus_rejected() -> None:
    """bus= that is not an EventBus raises TypeError naming `bus`."""
    with pytest.raises(TypeError, match="bus"):
        pipeline(retry(), bus="bus")  # type: ignore[arg-type]


# --- CallSucceeded / CallFailed --------------------------------------------------------------


async def test_call_succeeded_once_with_duration(clock: FakeClock) -> None:
    """A call that succeeds after retries emits one CallSucceeded with its total duration."""
    calls = 0

    @retry(attempts=3, backoff=1.5, clock=clock)
    async def flaky() -> str:
        nonlocal calls
        calls += 1
        await clock.sleep(0.25)
        if calls < 3:
            raise ValueError
        return "ok"

    clock.advance(100)
    with capture_events(CallSucceeded, CallFailed) as events:
        assert await flaky() == "ok"
    assert events == [
        CallSucceeded(policy="pipeline", name=None, operation=flaky.__qualname__, time=103.75, duration=3.75)
    ]


async def test_call_failed_once_with_exception(clock: FakeClock) -> None:
    """A call that fails after all attempts emits one CallFailed carrying the raised exception."""
    boom = ValueError("boom")

    async def fails() -> None:
        await clock.sleep(1)
        raise boom

    p = pipeline(retry(attempts=3, backoff=0, clock=clock), name="api")
    with capture_events(CallSucceeded, CallFailed) as events, pytest.raises(ValueError):
        await p.call(fails)
    assert events == [
        CallFailed(
            policy="pipeline",
            name="api",
            operation=fails.__qualname__,
            time=3.0,
            duration=3.0,
            exception=boom,
        )
    ]


def test_call_events_for_sync_functions(clock: FakeClock) -> None:
    """Sync calls emit CallSucceeded and CallFailed too."""

    @retry(attempts=2, backoff=2, clock=clock)
    def fails() -> None:
        raise KeyError

    with capture_events(CallSucceeded, CallFailed) as events, pytest.raises(KeyError):
        fails()
    assert [(type(e).__name__, e.duration) for e in events] == [("CallFailed", 2.0)]  # type: ignore[attr-defined]


async def test_stacked_decorators_one_call_event(clock: FakeClock) -> None:
    """Stacked decorators are one pipeline: one CallSucceeded per call."""

    @fallback(None)
    @timeout(1, clock=clock)
    @retry(clock=clock)
    async def op() -> int:
        return 1

    with capture_events(CallSucceeded) as events:
        await op()
    assert len(events) == 1


async def test_nested_decorated_calls_each_emit(clock: FakeClock) -> None:
    """A decorated function calling another emits one event per decorated call, inner first."""

    @retry(clock=clock)
    async def inner() -> int:
        return 1

    @retry(clock=clock)
    async def outer() -> int:
        return await inner()

    with capture_events(CallSucceeded) as events:
        await outer()
    assert [e.operation for e in events] == [inner.__qualname__, outer.__qualname__]


async def test_cancelled_call_emits_nothing(clock: FakeClock) -> None:
    """A cancelled call is not a failure: no CallFailed, no CallSucceeded."""

    @retry(clock=clock)
    async def op() -> None:
        await asyncio.Event().wait()

    with capture_events(CallSucceeded, CallFailed) as events:
        task = asyncio.ensure_future(op())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert events == []


async def test_fallback_success_is_call_succeeded(clock: FakeClock) -> None:
    """A call rescued by fallback is a success for the pipeline."""

    @fallback("default")
    @retry(attempts=1, clock=clock)
    async def op() -> str:
        raise ValueError

    with capture_events(CallSucceeded, CallFailed, FallbackUsed) as events:
        assert await op() == "default"
    assert [type(e) for e in events] == [FallbackUsed, CallSucceeded]


# --- the event classes -------------------------------------------------------------------------

ALL_EVENTS: list[type[Event]] = [
    RetryScheduled,
    RetriesExhausted,
    TimeoutElapsed,
    CircuitStateChanged,
    CircuitOpened,
    CircuitHalfOpened,
    CircuitClosed,
    CircuitIsolated,
    CallRejected,
    CircuitRejected,
    BulkheadRejected,
    FallbackUsed,
    CallSucceeded,
    CallFailed,
]

EXTRA_FIELDS = {
    RetryScheduled: {"attempt", "delay", "exception", "result"},
    RetriesExhausted: {"attempts", "exception", "reason"},
    TimeoutElapsed: {"seconds"},
    CircuitStateChanged: {"previous", "state"},
    CallRejected: {"retry_after"},
    FallbackUsed: {"exception"},
    CallSucceeded: {"duration"},
    CallFailed: {"duration", "exception"},
}


@pytest.mark.parametrize("cls", ALL_EVENTS, ids=lambda c: c.__name__)
def test_event_has_common_fields(cls: type[Event]) -> None:
    """Every event has policy, name, operation and time."""
    assert {"policy", "name", "operation", "time"} <= {f.name for f in dataclasses.fields(cls)}


@pytest.mark.parametrize("cls", list(EXTRA_FIELDS), ids=lambda c: c.__name__)
def test_event_extra_fields(cls: type[Event]) -> None:
    """Each event carries the extra fields of the contract."""
    names = {f.name for f in dataclasses.fields(cls)} - {"policy", "name", "operation", "time"}
    assert names == EXTRA_FIELDS[cls]


@pytest.mark.parametrize(
    ("cls", "base"),
    [
        (CircuitOpened, CircuitStateChanged),
        (CircuitHalfOpened, CircuitStateChanged),
        (CircuitClosed, CircuitStateChanged),
        (CircuitIsolated, CircuitStateChanged),
        (CircuitRejected, CallRejected),
        (BulkheadRejected, CallRejected),
    ],
)
def test_event_hierarchy(cls: type[Event], base: type[Event]) -> None:
    """State-change and rejection events subclass their base event."""
    assert issubclass(cls, base)


@pytest.mark.parametrize("event", [opened(), rejected()], ids=["opened", "rejected"])
def test_events_are_frozen(event: Event) -> None:
    """Assigning to an event's field raises FrozenInstanceError."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.time = 5.0  # type: ignore[misc]


@pytest.mark.parametrize("cls", ALL_EVENTS, ids=lambda c: c.__name__)
def test_events_are_slotted(cls: type[Event]) -> None:
    """Event classes use __slots__: instances have no __dict__."""
    assert "__slots__" in cls.__dict__
    assert "__dict__" not in dir(cls)


def test_event_equality_and_hash() -> None:
    """Events compare by value and hash, as frozen dataclasses."""
    assert opened() == opened()
    assert hash(opened()) == hash(opened())


# --- policy strings --------------------------------------------------------------------------


async def test_policy_strings(clock: FakeClock) -> None:
    """Core policies report the exact `policy` strings of the contract."""
    with capture_events() as events:
        await exercise(clock)
    kinds = {(type(e).__name__, e.policy) for e in events}
    assert kinds == {
        ("RetryScheduled", "retry"),
        ("RetriesExhausted", "retry"),
        ("TimeoutElapsed", "timeout"),
        ("FallbackUsed", "fallback"),
        ("CallSucceeded", "pipeline"),
        ("CallFailed", "pipeline"),
    }


def test_policy_kinds() -> None:
    """Each policy class's kind is its `policy` string."""
    kinds: dict[type[resilient.Policy], str] = {
        resilient.Retry: "retry",
        resilient.Timeout: "timeout",
        resilient.Fallback: "fallback",
        resilient.Pipeline: "pipeline",
    }
    for name, kind in (("CircuitBreaker", "circuit_breaker"), ("Bulkhead", "bulkhead")):
        cls = getattr(resilient, name, None)
        if cls is not None:
            kinds[cls] = kind
    assert {cls: cls.kind for cls in kinds} == kinds


# --- capture_events --------------------------------------------------------------------------


def test_capture_events_records_only_while_open() -> None:
    """capture_events() records what the default bus emits inside the block, and nothing after."""
    with capture_events() as events:
        default_bus.emit(opened())
    default_bus.emit(opened("later"))
    assert events == [opened()]


def test_capture_events_filters_types() -> None:
    """capture_events(*types) records only those types and their subclasses."""
    with capture_events(CallRejected) as events:
        default_bus.emit(opened())
        default_bus.emit(rejected())
    assert events == [rejected()]


def test_capture_events_on_other_bus(bus: EventBus) -> None:
    """capture_events(bus=...) listens on that bus only."""
    with capture_events(bus=bus) as events:
        default_bus.emit(opened("default"))
        bus.emit(opened("private"))
    assert events == [opened("private")]


def test_default_bus_exported() -> None:
    """EventBus is importable from resilient and resilient.events; default_bus is an EventBus."""
    assert resilient.EventBus is resilient.events.EventBus
    assert isinstance(default_bus, EventBus)


def test_bus_clear(bus: EventBus) -> None:
    """clear() removes every subscription."""
    seen: list[Event] = []
    sub = subscribe(seen.append, bus=bus)
    bus.clear()
    bus.emit(opened())
    assert (seen, sub.active) == ([], False)


def test_overlapping_types_deliver_once(bus: EventBus) -> None:
    """A handler subscribed to a class and its base receives each event once."""
    seen: list[Event] = []
    subscribe(seen.append, Event, CircuitStateChanged, CircuitOpened, bus=bus)
    bus.emit(opened())
    assert seen == [opened()]


def test_awaitable_from_sync_handler_outside_loop_is_closed(
    bus: EventBus, caplog: pytest.LogCaptureFixture
) -> None:
    """A sync handler returning a coroutine where no loop runs has it closed and logged, not leaked."""
    made: list[Any] = []

    async def later() -> None:
        pass

    def handler(event: Event) -> Any:
        made.append(later())
        return made[-1]

    subscribe(handler, bus=bus)
    with caplog.at_level(logging.ERROR, logger="resilient"):
        bus.emit(opened())
    assert made[0].cr_frame is None  # closed: no "never awaited" warning
    assert "outside a loop" in caplog.text


def test_bus_repr(bus: EventBus) -> None:
    """The bus's repr counts its subscriptions."""
    subscribe(lambda e: None, bus=bus)
    assert repr(bus) == "<EventBus subscriptions=1>"
