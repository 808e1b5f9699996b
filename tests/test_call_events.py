"""The call lifecycle of an observed pipeline: CallStarted, the end events, exit callbacks, attributes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

import resilient
from resilient import CallContext, EventBus
from resilient._context import delivered_call
from resilient.events import (
    CallCancelled,
    CallFailed,
    CallStarted,
    CallSucceeded,
    Event,
    RetryScheduled,
)
from resilient.testing import FakeClock

# A catch-all subscription (Event) skips the lifecycle-only events; name them to see every event.
EVERY = (Event, CallStarted, CallCancelled)

Body = Callable[[], Any]
Runner = Callable[..., Any]


@pytest.fixture
def bus() -> EventBus:
    """A private bus."""
    return EventBus()


@pytest.fixture(params=["async", "sync"])
def run(request: pytest.FixtureRequest) -> Runner:
    """Run ``body`` behind *policies* as an async or a sync function named ``fetch_user``.

    Call it as ``run(body, *policies, bus=..., attributes=None, args=())``; it
    returns the result, or the exception the call raised (BaseExceptions too).
    """
    is_async = request.param == "async"

    def go(
        body: Body,
        *policies: resilient.Policy,
        bus: EventBus,
        attributes: Any = None,
        args: tuple[Any, ...] = (),
    ) -> Any:
        pipe = resilient.pipeline(*policies, bus=bus, attributes=attributes)
        if is_async:

            async def fetch_user(*_: Any) -> Any:
                return body()

            fetch_user.__qualname__ = "fetch_user"
            guarded_async = pipe(fetch_user)
            try:
                return asyncio.run(guarded_async(*args))
            except BaseException as exc:
                return exc

        def fetch_user_sync(*_: Any) -> Any:
            return body()

        fetch_user_sync.__qualname__ = "fetch_user"
        guarded_sync = pipe(fetch_user_sync)
        try:
            return guarded_sync(*args)
        except BaseException as exc:
            return exc

    return go


def kinds(events: list[Event]) -> list[str]:
    """The class names of *events*."""
    return [type(e).__name__ for e in events]


def fail_once() -> Body:
    """A body that raises ConnectionError on its first call and returns "ok" after."""
    failures = [ConnectionError("refused")]

    def body() -> str:
        if failures:
            raise failures.pop()
        return "ok"

    return body


# --- events ---------------------------------------------------------------------


def test_started_then_succeeded_once_per_call(run: Runner, bus: EventBus, clock: FakeClock) -> None:
    """A retried call emits CallStarted before its first attempt and CallSucceeded once at the end."""
    with resilient.testing.capture_events(*EVERY, bus=bus) as events:
        run(fail_once(), resilient.retry(backoff=0.5, clock=clock, bus=bus), bus=bus)
    assert kinds(events) == ["CallStarted", "RetryScheduled", "CallSucceeded"]


def test_started_carries_operation_and_start_time(run: Runner, bus: EventBus, clock: FakeClock) -> None:
    """CallStarted names the operation (its __qualname__) and the start time on the pipeline's clock."""
    clock.advance(3)
    with resilient.testing.capture_events(CallStarted, bus=bus) as events:
        run(lambda: "ok", resilient.retry(clock=clock, bus=bus), bus=bus)
    assert events == [CallStarted(policy="pipeline", name=None, operation="fetch_user", time=3.0)]


def test_failure_emits_call_failed(run: Runner, bus: EventBus) -> None:
    """A failed call ends with CallFailed, never CallCancelled."""

    def body() -> None:
        raise ValueError("bad")

    with resilient.testing.capture_events(*EVERY, bus=bus) as events:
        run(body, resilient.fallback(0, on=KeyError, bus=bus), bus=bus)
    assert kinds(events) == ["CallStarted", "CallFailed"]


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_control_flow_exception_emits_call_cancelled(
    run: Runner, bus: EventBus, interrupt: type[BaseException]
) -> None:
    """A call ended by a control-flow exception emits CallCancelled with that object, which propagates."""
    raised = interrupt()

    def body() -> None:
        raise raised

    with resilient.testing.capture_events(*EVERY, bus=bus) as events:
        outcome = run(body, resilient.retry(bus=bus), resilient.fallback(0, bus=bus), bus=bus)
    assert (outcome, kinds(events), events[-1].exception) == (  # type: ignore[attr-defined]
        raised,
        ["CallStarted", "CallCancelled"],
        raised,
    )


async def test_cancelled_task_emits_call_cancelled(bus: EventBus, clock: FakeClock) -> None:
    """A task cancelled mid-call emits CallCancelled (not CallFailed) with its duration, and propagates."""
    entered = asyncio.Event()

    @resilient.retry(attempts=3, clock=clock, bus=bus)
    async def hang() -> None:
        entered.set()
        await asyncio.Event().wait()

    with resilient.testing.capture_events(*EVERY, bus=bus) as events:
        task = asyncio.create_task(hang())
        await entered.wait()
        clock.advance(2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert (kinds(events), events[-1].duration) == (  # type: ignore[attr-defined]
        ["CallStarted", "CallCancelled"],
        2.0,
    )


def test_subscribing_to_call_started_alone_observes_the_pipeline(bus: EventBus) -> None:
    """A CallStarted subscriber alone makes calls observed: each gets a context of its own."""
    seen: list[CallContext | None] = []

    @resilient.retry(bus=bus)
    def work() -> None:
        return None

    with bus.subscribe(lambda e: seen.append(resilient.current_call()), CallStarted):
        work()
        work()
    assert (len(seen), seen[0] is not seen[1], seen[0] is not None and seen[0].shared) == (2, True, False)


# --- exit callbacks ---------------------------------------------------------------


def outcome_of(result: object) -> str:
    """Name what a run returned: the exception's class, or "ok"."""
    return type(result).__name__ if isinstance(result, BaseException) else "ok"


@pytest.mark.parametrize(
    ("raised", "expected"),
    [(None, "ok"), (ConnectionError("x"), "ConnectionError"), (KeyboardInterrupt(), "KeyboardInterrupt")],
)
def test_exit_callbacks_run_once_in_every_outcome(
    run: Runner, bus: EventBus, raised: BaseException | None, expected: str
) -> None:
    """Callbacks registered from CallStarted run once, last first, with the call's exception (or None)."""
    calls: list[tuple[str, str]] = []

    def opened(event: CallStarted) -> None:
        ctx = resilient.current_call()
        assert ctx is not None
        ctx.on_exit(lambda exc: calls.append(("first", outcome_of(exc))))
        ctx.on_exit(lambda exc: calls.append(("second", outcome_of(exc))))

    def body() -> str:
        if raised is not None:
            raise raised
        return "ok"

    with bus.subscribe(opened, CallStarted):
        run(body, resilient.retry(attempts=1, bus=bus), bus=bus)
    assert calls == [("second", expected), ("first", expected)]


def test_exit_callbacks_run_after_unsubscribing_mid_call(run: Runner, bus: EventBus) -> None:
    """An exit callback still runs when its handler was unsubscribed while the call ran."""
    closed: list[str] = []
    subscription: resilient.Subscription

    def opened(event: CallStarted) -> None:
        ctx = resilient.current_call()
        assert ctx is not None
        ctx.on_exit(lambda exc: closed.append("closed"))

    def body() -> str:
        subscription.unsubscribe()
        return "ok"

    subscription = bus.subscribe(opened, CallStarted)
    run(body, resilient.retry(bus=bus), bus=bus)
    assert closed == ["closed"]


async def test_exit_callbacks_run_on_cancellation(bus: EventBus) -> None:
    """A cancelled call runs its exit callbacks with the CancelledError."""
    closed: list[BaseException | None] = []
    entered = asyncio.Event()

    def opened(event: CallStarted) -> None:
        ctx = resilient.current_call()
        assert ctx is not None
        ctx.on_exit(closed.append)

    @resilient.timeout(10, bus=bus)
    async def hang() -> None:
        entered.set()
        await asyncio.Event().wait()

    with bus.subscribe(opened, CallStarted):
        task = asyncio.create_task(hang())
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert [type(e) for e in closed] == [asyncio.CancelledError]


def test_a_raising_exit_callback_is_logged_and_changes_nothing(
    run: Runner, bus: EventBus, caplog: pytest.LogCaptureFixture
) -> None:
    """An exit callback that raises is logged; the call's result and the other callbacks are unaffected."""
    closed: list[str] = []

    def broken(exc: BaseException | None) -> None:
        raise RuntimeError("bug in a callback")

    def opened(event: CallStarted) -> None:
        ctx = resilient.current_call()
        assert ctx is not None
        ctx.on_exit(lambda exc: closed.append("closed"))
        ctx.on_exit(broken)

    with bus.subscribe(opened, CallStarted):
        result = run(lambda: "ok", resilient.retry(bus=bus), bus=bus)
    assert (result, closed, "on_exit callback" in caplog.text) == ("ok", ["closed"], True)


def test_on_exit_refused_on_a_shared_context() -> None:
    """An unobserved call's shared context cannot take exit callbacks (they would never run)."""
    seen: list[CallContext | None] = []

    @resilient.retry(bus=EventBus())
    def work() -> None:
        seen.append(resilient.current_call())

    work()
    ctx = seen[0]
    assert ctx is not None
    assert ctx.shared
    with pytest.raises(RuntimeError, match="observed calls only"):
        ctx.on_exit(lambda exc: None)


def test_on_exit_needs_a_callable() -> None:
    """on_exit() refuses a non-callable."""
    ctx = CallContext("f", resilient.pipeline())
    with pytest.raises(TypeError, match="callable"):
        ctx.on_exit("not callable")  # type: ignore[arg-type]


# --- names, attributes, fallback ------------------------------------------------------


def test_full_name_is_module_qualified(bus: EventBus) -> None:
    """The context carries the module-qualified name; events keep the bare __qualname__."""
    seen: list[tuple[str, str]] = []

    @resilient.retry(bus=bus)
    def work() -> None:
        ctx = resilient.current_call()
        assert ctx is not None
        seen.append((ctx.operation, ctx.full_name))

    with resilient.testing.capture_events(CallSucceeded, bus=bus) as events:
        work()
    assert (seen, events[0].operation) == (
        [(work.__qualname__, f"{__name__}.{work.__qualname__}")],
        work.__qualname__,
    )


def test_same_named_functions_of_two_modules_stay_apart(bus: EventBus) -> None:
    """One pipeline running same-named functions of two modules gives each its own full name."""
    names: list[str] = []
    policy = resilient.retry(bus=bus)

    def make(module: str) -> Callable[[], None]:
        def fetch() -> None:
            ctx = resilient.current_call()
            assert ctx is not None
            names.append(ctx.full_name)

        fetch.__module__ = module
        fetch.__qualname__ = "fetch"
        return fetch

    with bus.subscribe(lambda e: None):
        policy.call(make("shop.orders"))
        policy.call(make("shop.users"))
    assert names == ["shop.orders.fetch", "shop.users.fetch"]


def test_attributes_from_the_call_arguments(run: Runner, bus: EventBus) -> None:
    """The pipeline's attributes callable turns the call's arguments into the context's attributes."""
    seen: list[dict[str, Any]] = []

    def body() -> str:
        ctx = resilient.current_call()
        assert ctx is not None
        seen.append(dict(ctx.attributes))
        return "ok"

    with bus.subscribe(lambda e: None):
        run(
            body,
            resilient.retry(bus=bus),
            bus=bus,
            attributes=lambda url, **_: {"server.address": url.split("/")[2], "none": None},
            args=("https://api.example.com/users",),
        )
    assert seen == [{"server.address": "api.example.com"}]


def test_attributes_not_computed_for_unobserved_calls(run: Runner, bus: EventBus) -> None:
    """With nobody subscribed, the attributes callable is never called: unobserved calls pay nothing."""
    calls: list[object] = []

    def attributes(*args: Any) -> dict[str, str]:
        calls.append(args)
        return {}

    assert run(lambda: "ok", resilient.retry(bus=bus), bus=bus, attributes=attributes) == "ok"
    assert calls == []


def test_attributes_callable_that_raises_is_logged(
    run: Runner, bus: EventBus, caplog: pytest.LogCaptureFixture
) -> None:
    """A raising attributes callable is logged; the call runs, without attributes."""

    def attributes(*args: Any) -> dict[str, str]:
        raise KeyError("host")

    with bus.subscribe(lambda e: None):
        result = run(lambda: "ok", resilient.retry(bus=bus), bus=bus, attributes=attributes)
    assert (result, "attributes callable" in caplog.text) == ("ok", True)


@pytest.mark.parametrize(
    "returned",
    [["host"], {1: "x"}, {"": "x"}, {"tags": ["a", "b"]}],
    ids=["not-a-mapping", "int-key", "empty-key", "list-value"],
)
def test_unusable_attributes_are_logged_and_dropped(
    bus: EventBus, caplog: pytest.LogCaptureFixture, returned: object
) -> None:
    """What is not a str -> scalar mapping is logged and dropped; usable entries stay."""
    seen: list[dict[str, Any]] = []

    def attributes() -> Any:
        if isinstance(returned, dict):
            return {**returned, "ok": 1}
        return returned

    @resilient.pipeline(resilient.retry(bus=bus), bus=bus, attributes=attributes)
    def work() -> None:
        ctx = resilient.current_call()
        assert ctx is not None
        seen.append(dict(ctx.attributes))

    with caplog.at_level(logging.ERROR, "resilient"), bus.subscribe(lambda e: None):
        work()
    expected = [{"ok": 1}] if isinstance(returned, dict) else [{}]
    assert (seen, "attributes callable" in caplog.text) == (expected, True)


@pytest.mark.parametrize("bad", [42, "host"])
def test_attributes_must_be_callable(bad: object) -> None:
    """A non-callable attributes= fails at construction, naming the parameter."""
    with pytest.raises(TypeError, match="attributes"):
        resilient.pipeline(resilient.retry(), attributes=bad)  # type: ignore[arg-type]


def test_async_attributes_callable_refused() -> None:
    """An async attributes callable fails at construction: it would run in no loop."""

    async def attributes(*args: Any) -> dict[str, str]:
        return {}

    with pytest.raises(TypeError, match="sync callable"):
        resilient.pipeline(resilient.retry(), attributes=attributes)  # type: ignore[arg-type]


def test_attributes_survive_stacking(bus: EventBus) -> None:
    """A pipeline(attributes=...) stacked on decorators keeps its callable in the folded pipeline."""
    seen: list[dict[str, Any]] = []

    @resilient.pipeline(attributes=lambda key: {"key": key})
    @resilient.retry(bus=bus)
    def lookup(key: str) -> None:
        ctx = resilient.current_call()
        assert ctx is not None
        seen.append(dict(ctx.attributes))

    with bus.subscribe(lambda e: None):
        lookup("k1")
    assert seen == [{"key": "k1"}]


def test_set_attribute_during_the_call(run: Runner, bus: EventBus) -> None:
    """set_attribute() adds to the call's attributes without touching other calls."""
    seen: list[dict[str, Any]] = []

    def body() -> str:
        ctx = resilient.current_call()
        assert ctx is not None
        ctx.set_attribute("shard", len(seen))
        seen.append(dict(ctx.attributes))
        return "ok"

    with bus.subscribe(lambda e: None):
        run(body, resilient.retry(bus=bus), bus=bus, attributes=lambda: {"region": "eu"})
        run(body, resilient.retry(bus=bus), bus=bus)
    assert seen == [{"region": "eu", "shard": 0}, {"shard": 1}]


def test_set_attribute_on_an_unobserved_call_is_dropped(run: Runner, bus: EventBus) -> None:
    """On an unobserved call set_attribute() is accepted and dropped: the shared context stays empty."""
    seen: list[dict[str, Any]] = []

    def body() -> str:
        ctx = resilient.current_call()
        assert ctx is not None
        ctx.set_attribute("shard", 1)
        seen.append(dict(ctx.attributes))
        return "ok"

    run(body, resilient.retry(bus=bus), bus=bus)
    assert seen == [{}]


@pytest.mark.parametrize(("key", "value"), [("", 1), (3, 1), ("k", None), ("k", [1])])
def test_set_attribute_rejects_bad_input(key: Any, value: Any) -> None:
    """set_attribute() raises TypeError for a bad name or a non-scalar value."""
    with pytest.raises(TypeError, match="set_attribute"):
        CallContext("f", resilient.pipeline()).set_attribute(key, value)


def test_fallback_marks_the_call(run: Runner, bus: EventBus) -> None:
    """A call answered by a fallback says so on its context; a plain success does not."""
    marks: list[bool] = []

    def ended(event: CallSucceeded) -> None:
        ctx = resilient.current_call()
        assert ctx is not None
        marks.append(ctx.fallback_used)

    def body() -> str:
        raise ConnectionError("refused")

    with bus.subscribe(ended, CallSucceeded):
        run(body, resilient.fallback("cached", bus=bus), bus=bus)
        run(lambda: "fresh", resilient.fallback("cached", bus=bus), bus=bus)
    assert marks == [True, False]


def test_call_events_are_exported() -> None:
    """The lifecycle events are public in resilient.events and match by base class like the others."""
    assert all(issubclass(c, Event) for c in (CallStarted, CallCancelled, CallFailed, RetryScheduled))


@pytest.mark.parametrize("event_type", [CallStarted, CallSucceeded])
def test_exit_callbacks_run_when_a_handler_interrupts(bus: EventBus, event_type: type[Event]) -> None:
    """A handler raising KeyboardInterrupt (which the bus lets through) still lets registered exits run."""
    closed: list[str] = []

    def opened(event: CallStarted) -> None:
        ctx = resilient.current_call()
        assert ctx is not None
        ctx.on_exit(lambda exc: closed.append(type(exc).__name__))

    def interrupt(event: Event) -> None:
        raise KeyboardInterrupt

    @resilient.retry(bus=bus)
    def work() -> str:
        return "ok"

    first, second = bus.subscribe(opened, CallStarted), bus.subscribe(interrupt, event_type)
    with first, second, pytest.raises(KeyboardInterrupt):
        work()
    assert closed == ["KeyboardInterrupt" if event_type is CallStarted else "NoneType"]


def test_delivered_call_names_the_call_of_its_lifecycle_events(bus: EventBus) -> None:
    """While a call's own events are delivered, delivered_call() is its context, as current_call() says."""
    seen: list[tuple[str, bool]] = []

    def check(event: Event) -> None:
        seen.append((type(event).__name__, delivered_call() is resilient.current_call() is not None))

    @resilient.retry(bus=bus)
    def inner() -> None:
        return None

    def nested(event: CallSucceeded) -> None:
        if event.operation == outer.__qualname__:
            inner()  # a call made from a handler: its own events name it

    @resilient.retry(bus=bus)
    def outer() -> None:
        return None

    with bus.subscribe(check, CallStarted, CallSucceeded), bus.subscribe(nested, CallSucceeded):
        outer()
    assert (seen, delivered_call()) == (
        [("CallStarted", True), ("CallSucceeded", True), ("CallStarted", True), ("CallSucceeded", True)],
        None,
    )


def test_catch_all_subscription_sees_the_documented_stream(
    run: Runner, bus: EventBus, clock: FakeClock
) -> None:
    """A subscription to every event (no types) gets no CallStarted/CallCancelled: the stream API.md lists."""
    with resilient.testing.capture_events(bus=bus) as events:
        run(fail_once(), resilient.retry(backoff=0.5, clock=clock, bus=bus), bus=bus)
    assert kinds(events) == ["RetryScheduled", "CallSucceeded"]


def test_catch_all_subscription_sees_nothing_for_a_cancelled_call(run: Runner, bus: EventBus) -> None:
    """A call ended by KeyboardInterrupt emits nothing to a catch-all subscriber (not a failure)."""

    def body() -> None:
        raise KeyboardInterrupt

    with resilient.testing.capture_events(bus=bus) as events:
        run(body, resilient.retry(bus=bus), bus=bus)
    assert events == []
