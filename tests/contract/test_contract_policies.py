"""Black-box contract checks of API.md sections 3 (retry, timeout, fallback), 4 (errors) and 6 (events)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import logging
import math
import random
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

import resilient
from resilient import (
    BulkheadFullError,
    CircuitOpenError,
    EventBus,
    ResilientError,
    Subscription,
    TimeoutExceededError,
    backoff,
    bulkhead,
    circuit_breaker,
    current_call,
    fallback,
    remaining,
    retry,
    subscribe,
    timeout,
)
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
)
from resilient.testing import FakeClock, capture_events


class Boom(Exception):
    """A failure that may carry a ``retry_after`` hint."""

    def __init__(self, retry_after: float | None = None) -> None:
        super().__init__("boom")
        if retry_after is not None:
            self.retry_after = retry_after


class Fixed(random.Random):
    """A random source that always draws the same fraction."""

    def __init__(self, r: float) -> None:
        super().__init__(0)
        self.r = r

    def random(self) -> float:
        """Return the fixed fraction."""
        return self.r


@pytest.fixture
def bus() -> EventBus:
    """A private bus."""
    return EventBus()


@pytest.fixture(params=[False, True], ids=["sync", "async"])
def is_async(request: pytest.FixtureRequest) -> bool:
    """Run a policy around a sync or an async function."""
    flag: bool = request.param
    return flag


def run(policy: Any, body: Callable[[], Any], is_async: bool) -> Any:
    """Decorate a sync or async function calling *body* with *policy* and call it once."""
    if not is_async:
        return policy(lambda: body())()

    async def fn() -> Any:
        return body()

    return asyncio.run(policy(fn)())


def failing(*errors: BaseException, then: Any = "ok") -> tuple[Callable[[], Any], list[BaseException]]:
    """A body raising *errors* in turn (each a fresh raise), then returning *then*."""
    seen: list[BaseException] = []

    def body() -> Any:
        if len(seen) < len(errors):
            seen.append(errors[len(seen)])
            raise seen[-1]
        seen.append(Exception("returned"))
        return then

    return body, seen


# --- retry ------------------------------------------------------------------------


@pytest.mark.parametrize("attempts", [1, 3])
def test_retry_attempts_total_and_reraises_same_object(
    is_async: bool, clock: FakeClock, attempts: int
) -> None:
    """After `attempts` failures the last exception is re-raised as the same object with its traceback."""
    errors = [Boom() for _ in range(attempts)]
    body, seen = failing(*errors, Boom())
    with pytest.raises(Boom) as info:
        run(retry(attempts=attempts, clock=clock), body, is_async)
    assert info.value is errors[-1]
    assert len(seen) == attempts
    assert len(clock.sleeps) == attempts - 1
    frames = []
    tb = info.value.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert frames[-1] == "body"


@pytest.mark.parametrize(
    "on",
    [Boom, (KeyError, Boom), lambda e: isinstance(e, Boom), BaseException],
    ids=["type", "tuple", "predicate", "BaseException"],
)
def test_retry_on_selects_failures(is_async: bool, clock: FakeClock, on: Any) -> None:
    """`on` as a type, tuple, predicate or BaseException retries matches and lets others through at once."""
    body, _seen = failing(Boom())
    assert run(retry(on=on, clock=clock), body, is_async) == "ok"
    other, seen_other = failing(TypeError(), TypeError())
    if on is not BaseException:
        with pytest.raises(TypeError):
            run(retry(on=on, clock=clock), other, is_async)
        assert len(seen_other) == 1


@pytest.mark.parametrize("on", [Boom, lambda e: isinstance(e, Boom)], ids=["type", "predicate"])
@pytest.mark.parametrize(
    ("leaves", "retried"),
    [
        ([Boom(), ExceptionGroup("inner", [Boom()])], True),
        ([Boom(), ExceptionGroup("inner", [KeyError()])], False),
    ],
    ids=["all-leaves-match", "one-leaf-differs"],
)
def test_retry_exception_group_matches_when_every_leaf_matches(
    clock: FakeClock, on: Any, leaves: list[Exception], retried: bool
) -> None:
    """An ExceptionGroup (nested too) is retried only when every leaf matches `on`."""
    group = ExceptionGroup("g", leaves)
    body, seen = failing(group)
    if retried:
        assert run(retry(on=on, clock=clock), body, False) == "ok"
    else:
        with pytest.raises(ExceptionGroup):
            run(retry(on=on, clock=clock), body, False)
    assert len(seen) == (2 if retried else 1)


@pytest.mark.parametrize(("results", "expected"), [([None, None, None], None), ([None, 5], 5)])
def test_retry_on_result(is_async: bool, clock: FakeClock, results: list[Any], expected: Any) -> None:
    """on_result True retries; on exhaustion the last result is returned."""
    queue = list(results)
    calls: list[int] = []

    def body() -> Any:
        calls.append(1)
        return queue.pop(0)

    assert run(retry(on_result=lambda r: r is None, clock=clock), body, is_async) == expected
    assert len(calls) == len(results)


@pytest.mark.parametrize(
    "exc", [KeyboardInterrupt(), SystemExit(3), GeneratorExit(), asyncio.CancelledError()], ids=repr
)
def test_retry_never_retries_control_flow(is_async: bool, clock: FakeClock, exc: BaseException) -> None:
    """A BaseException that is not an Exception propagates as the same object even with on=BaseException."""
    body, seen = failing(exc)
    with pytest.raises(type(exc)) as info:
        run(retry(on=BaseException, on_result=lambda r: True, clock=clock), body, is_async)
    assert (info.value, len(seen)) == (exc, 1)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (0.25, [0.25, 0.25]),
        (timedelta(milliseconds=250), [0.25, 0.25]),
        (backoff.linear(initial=1, increment=1), [1.0, 2.0]),
        (lambda attempt, exc: attempt * 10.0, [10.0, 20.0]),
    ],
    ids=["float", "timedelta", "strategy", "callable"],
)
def test_backoff_forms(is_async: bool, clock: FakeClock, spec: Any, expected: list[float]) -> None:
    """backoff accepts constant seconds, a timedelta, a strategy and a callable (attempt, exc)."""
    body, _ = failing(Boom(), Boom())
    assert run(retry(backoff=spec, clock=clock), body, is_async) == "ok"
    assert clock.sleeps == pytest.approx(expected)


def test_backoff_callable_receives_attempt_and_exception(clock: FakeClock) -> None:
    """The callable gets the 1-based retry number and the exception being retried."""
    got: list[tuple[int, BaseException | None]] = []
    errors = [Boom(), Boom()]
    body, _ = failing(*errors)

    def record(attempt: int, exc: BaseException | None) -> float:
        got.append((attempt, exc))
        return 0.0

    run(retry(backoff=record, clock=clock), body, False)
    assert got == [(1, errors[0]), (2, errors[1])]


def test_default_backoff_is_full_jitter_exponential(clock: FakeClock, bus: EventBus) -> None:
    """Default waits: retry k uniform in [0, min(10, 0.1 * 2 ** (k - 1))] (section 9)."""
    random.seed(1234)
    delays: dict[int, list[float]] = {}
    bus.subscribe(lambda e: delays.setdefault(e.attempt, []).append(e.delay), RetryScheduled)
    policy = retry(attempts=10, clock=clock, bus=bus)
    for _ in range(60):
        body, _ = failing(*[Boom() for _ in range(9)])
        run(policy, body, False)
    for k, got in delays.items():
        bound = min(10.0, 0.1 * 2 ** (k - 1))
        assert all(0.0 <= d <= bound for d in got), k
        assert max(got) > 0.7 * bound, k
        assert min(got) < 0.3 * bound, k


def test_full_jitter_clamps_then_jitters(clock: FakeClock) -> None:
    """Jitter applies to the clamped delay: draws of 0.5 give half of min(max_delay, base)."""
    strategy = backoff.exponential(initial=1, multiplier=3, max_delay=5, jitter="full", rng=Fixed(0.5))
    body, _ = failing(*[Boom() for _ in range(4)])
    run(retry(attempts=5, backoff=strategy, clock=clock), body, False)
    assert clock.sleeps == pytest.approx([0.5, 1.5, 2.5, 2.5])


@pytest.mark.parametrize(("hint", "expected"), [(3.0, [3.0, 3.0]), (0.01, [1.0, 1.0])])
def test_retry_after_waits_the_larger(
    is_async: bool, clock: FakeClock, hint: float, expected: list[float]
) -> None:
    """An exception's retry_after makes retry wait max(backoff delay, retry_after)."""
    body, _ = failing(Boom(hint), Boom(hint))
    assert run(retry(backoff=backoff.constant(1, max_delay=10), clock=clock), body, is_async) == "ok"
    assert clock.sleeps == pytest.approx(expected)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [({}, "retry_after"), ({"deadline": 3, "backoff": backoff.constant(0.1, max_delay=60)}, "deadline")],
)
def test_retry_after_too_long_gives_up_at_once(
    is_async: bool, clock: FakeClock, kwargs: dict[str, Any], reason: str
) -> None:
    """retry_after beyond max_delay (default 10) or the deadline gives up at once with that reason."""
    err = Boom(11.0)
    body, seen = failing(err)
    with capture_events(RetriesExhausted) as events, pytest.raises(Boom) as info:
        run(retry(clock=clock, **kwargs), body, is_async)
    assert (info.value, len(seen), clock.sleeps) == (err, 1, [])
    assert [(e.reason, e.attempts, e.exception) for e in events] == [(reason, 1, err)]  # type: ignore[attr-defined]


@pytest.mark.parametrize("hint", [Fraction(3), Decimal(3)], ids=["Fraction", "Decimal"])
def test_retry_after_any_real_number(clock: FakeClock, hint: Any) -> None:
    """Any numeric retry_after (numbers.Real) raises the wait to at least that."""
    body, _ = failing(Boom(hint))
    run(retry(backoff=backoff.constant(1, max_delay=10), clock=clock), body, False)
    assert clock.sleeps == [3.0]


def test_retry_gives_up_on_open_breaker_hint(clock: FakeClock) -> None:
    """Over a breaker, the CircuitOpenError's retry_after (30 s > 10 s) makes retry give up at once."""
    body, seen = failing(Boom(), Boom())
    policy = resilient.pipeline(retry(clock=clock), circuit_breaker(failure_threshold=1, clock=clock))
    with capture_events(RetriesExhausted) as events, pytest.raises(CircuitOpenError) as info:
        run(policy, body, False)
    assert len(seen) == 1
    assert info.value.retry_after == pytest.approx(30.0, abs=0.2)
    assert [e.reason for e in events] == ["retry_after"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("deadline", [2.5, timedelta(seconds=2.5)])
def test_retry_deadline_never_starts_a_wait_past_it(is_async: bool, clock: FakeClock, deadline: Any) -> None:
    """With 1 s waits and a 2.5 s deadline, the third failure gives up (reason "deadline")."""
    body, seen = failing(*[Boom() for _ in range(9)])
    with capture_events(RetriesExhausted) as events, pytest.raises(Boom) as info:
        run(retry(attempts=10, backoff=1, deadline=deadline, clock=clock), body, is_async)
    assert (len(seen), clock.sleeps) == (3, [1.0, 1.0])
    assert info.value is seen[-1]
    assert [e.reason for e in events] == ["deadline"]  # type: ignore[attr-defined]


def test_retry_deadline_counts_attempt_time(is_async: bool, clock: FakeClock) -> None:
    """Time spent inside attempts counts: 2 s attempts exhaust a 3 s deadline after two tries."""
    calls: list[int] = []

    def body() -> None:
        calls.append(1)
        clock.advance(2)
        raise Boom

    with pytest.raises(Boom):
        run(retry(attempts=10, backoff=0.5, deadline=3, clock=clock), body, is_async)
    assert calls == [1, 1]


async def test_retry_respects_ambient_deadline(clock: FakeClock) -> None:
    """Inside timeout(2.5) retry gives up before a wait would cross it, re-raising its own failure."""
    body, seen = failing(*[Boom() for _ in range(9)])

    async def fn() -> Any:
        return body()

    with capture_events(RetriesExhausted) as events, pytest.raises(Boom):
        async with timeout(2.5, clock=clock):
            await retry(attempts=10, backoff=1, clock=clock).call(fn)
    assert len(seen) == 3
    assert [e.reason for e in events] == ["deadline"]  # type: ignore[attr-defined]


async def test_retry_concurrent_calls_have_their_own_state(clock: FakeClock) -> None:
    """Concurrent calls through one policy each see attempts 1, 2, 3 and waits 1, 2."""
    policy = retry(attempts=3, backoff=backoff.exponential(initial=1, jitter="none"), clock=clock)
    attempts: dict[str, list[int]] = {"a": [], "b": []}

    @policy
    async def work(key: str) -> None:
        ctx = current_call()
        assert ctx is not None
        attempts[key].append(ctx.attempt)
        await asyncio.sleep(0)
        raise Boom

    results = await asyncio.gather(work("a"), work("b"), return_exceptions=True)
    assert all(isinstance(r, Boom) for r in results)
    assert attempts == {"a": [1, 2, 3], "b": [1, 2, 3]}
    assert sorted(clock.sleeps) == [1.0, 1.0, 2.0, 2.0]


# --- timeout ----------------------------------------------------------------------


async def _enter_timeout(t: resilient.Timeout, body: Callable[[], Any]) -> Any:
    async with t:
        return await body()


FORMS: list[Callable[[resilient.Timeout, Callable[[], Any]], Any]] = [
    lambda t, body: t(body)(),
    lambda t, body: t.call(body),
    _enter_timeout,
]


@pytest.mark.parametrize("form", FORMS, ids=["decorator", "call", "async-with"])
@pytest.mark.parametrize("seconds", [1.5, timedelta(seconds=1.5)])
async def test_timeout_expiry(clock: FakeClock, form: Any, seconds: Any) -> None:
    """Expiry raises a fresh TimeoutExceededError (TimeoutError, .seconds, __cause__ CancelledError)."""
    task = asyncio.current_task()
    assert task is not None
    before = task.cancelling()
    errors = []

    async def body() -> None:
        await clock.sleep(5)

    for _ in range(2):
        with pytest.raises(TimeoutError) as info:
            await form(timeout(seconds, clock=clock), body)
        errors.append(info.value)
    assert task.cancelling() == before
    assert errors[0] is not errors[1]
    for err in errors:
        assert isinstance(err, TimeoutExceededError)
        assert isinstance(err, ResilientError)
        assert isinstance(err.__cause__, asyncio.CancelledError)
        assert (err.seconds, type(err.seconds)) == (1.5, float)


async def test_timeout_restores_cancelling_inside_cleanup(clock: FakeClock) -> None:
    """A timeout expiring in cleanup after a cancel raises TimeoutExceededError; cancelling() stays 1."""
    observed: list[Any] = []
    started = asyncio.Event()

    async def worker() -> None:
        try:
            started.set()
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            assert task is not None
            try:
                async with timeout(1, clock=clock):
                    await clock.sleep(5)
            except TimeoutExceededError as exc:
                observed.append((type(exc), task.cancelling()))
            raise

    task = asyncio.create_task(worker())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert observed == [(TimeoutExceededError, 1)]


@pytest.mark.parametrize("expire_first", [True, False], ids=["expiry-then-cancel", "cancel-then-expiry"])
async def test_outer_cancellation_is_never_a_timeout(clock: FakeClock, expire_first: bool) -> None:
    """An outside cancel landing in the same tick as the expiry propagates as CancelledError."""
    started = asyncio.Event()

    async def body() -> None:
        started.set()
        await asyncio.Event().wait()

    with capture_events(TimeoutElapsed) as events:
        task = asyncio.create_task(timeout(1, clock=clock).call(body))
        await started.wait()
        if expire_first:
            clock.advance(2)
            task.cancel()
        else:
            task.cancel()
            clock.advance(2)
        with pytest.raises(asyncio.CancelledError):
            await task
    assert events == []
    assert task.cancelled()


async def test_timeout_body_runs_in_callers_task(clock: FakeClock) -> None:
    """The body runs in the caller's task, so context variables it sets are visible afterwards."""
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    caller = asyncio.current_task()

    async def body() -> bool:
        var.set("set inside")
        return asyncio.current_task() is caller

    assert await timeout(1, clock=clock).call(body) is True
    assert var.get() == "set inside"


async def test_swallowed_cancellation_returns_value(clock: FakeClock) -> None:
    """A body that swallows the expiry's cancellation returns its value, with no stray cancel later."""

    async def body() -> str:
        try:
            await clock.sleep(5)
        except asyncio.CancelledError:
            return "swallowed"
        return "not cancelled"

    assert await timeout(1, clock=clock).call(body) == "swallowed"
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0
    for _ in range(3):
        await asyncio.sleep(0)


async def test_expiry_without_await_leaves_no_stray_cancel(clock: FakeClock) -> None:
    """A body passing its deadline without awaiting returns its value; the caller is not cancelled later."""

    async def body() -> str:
        clock.advance(5)
        return "done"

    assert await timeout(1, clock=clock).call(body) == "done"
    for _ in range(3):
        await asyncio.sleep(0)


async def test_inner_timeout_never_extends_outer(clock: FakeClock) -> None:
    """An inner timeout(5) inside timeout(1) sees <= 1 s remaining and the outer expiry wins."""
    seen: list[float | None] = []

    async def body() -> None:
        async with timeout(5, clock=clock):
            seen.append(remaining())
            await clock.sleep(10)

    with pytest.raises(TimeoutExceededError) as info:
        await timeout(1, clock=clock).call(body)
    assert info.value.seconds == 1.0
    assert seen[0] is not None
    assert seen[0] <= 1.0
    assert remaining() is None


async def test_inner_shorter_timeout_fires_and_outer_continues(clock: FakeClock) -> None:
    """A shorter inner timeout raises its own error, which the outer block can handle."""
    async with timeout(5, clock=clock):
        with pytest.raises(TimeoutExceededError) as info:
            async with timeout(1, clock=clock):
                await clock.sleep(3)
        assert info.value.seconds == 1.0
        await clock.sleep(1)


async def test_inner_timeout_after_swallowed_outer_expiry_still_fires(clock: FakeClock) -> None:
    """An inner timeout entered after the outer one expired (and was swallowed) still bounds its block."""

    async def body() -> float:
        try:
            await clock.sleep(2)
        except asyncio.CancelledError:
            pass
        with contextlib.suppress(TimeoutExceededError):
            async with timeout(5, clock=clock):
                await clock.sleep(100)
        return clock.monotonic()

    assert await timeout(1, clock=clock).call(body) <= 6.0


def test_timeout_rejects_sync_functions() -> None:
    """timeout on a sync function is a TypeError at decoration time (and through call)."""

    def sync() -> int:
        return 1

    with pytest.raises(TypeError):
        timeout(1)(sync)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        timeout(1).call(sync)  # type: ignore[arg-type, unused-coroutine]


def test_one_timeout_across_event_loops(clock: FakeClock) -> None:
    """One module-level timeout works in several asyncio.run() calls in a row."""
    guarded = timeout(1, clock=clock)(clock.sleep)
    for _ in range(2):
        with pytest.raises(TimeoutExceededError):
            asyncio.run(guarded(5))


# --- fallback ---------------------------------------------------------------------


def test_fallback_value_and_non_matching(is_async: bool) -> None:
    """A matching failure returns the value; a non-matching one propagates as the same object."""
    body, _ = failing(Boom())
    assert run(fallback(42, on=Boom), body, is_async) == 42
    err = KeyError("k")
    other, _ = failing(err)
    with pytest.raises(KeyError) as info:
        run(fallback(42, on=Boom), other, is_async)
    assert info.value is err


async def test_fallback_handler_gets_exception_and_arguments() -> None:
    """A callable default is called as default(exc, *args, **kwargs)."""
    err = Boom()
    got: list[Any] = []

    def handler(exc: BaseException, *args: Any, **kwargs: Any) -> str:
        got.append((exc, args, kwargs))
        return "handled"

    @fallback(handler)
    async def fn(a: int, *, b: int) -> str:
        raise err

    assert await fn(1, b=2) == "handled"
    assert got == [(err, (1,), {"b": 2})]


@pytest.mark.parametrize("kind", ["coroutine-function", "sync-returning-awaitable"])
async def test_fallback_awaits_awaitable_handler(kind: str) -> None:
    """A handler's awaitable result is awaited."""

    async def answer(exc: BaseException) -> str:
        return "awaited"

    handler: Any = answer if kind == "coroutine-function" else (lambda exc: answer(exc))

    async def fn() -> str:
        raise Boom

    assert await fallback(handler).call(fn) == "awaited"


def test_fallback_handler_raising_keeps_context(is_async: bool) -> None:
    """A handler's own exception propagates with __context__ set to the original failure."""
    err = Boom()
    body, _ = failing(err)

    def handler(exc: BaseException) -> None:
        raise KeyError("handler")

    with pytest.raises(KeyError) as info:
        run(fallback(handler), body, is_async)
    assert info.value.__context__ is err


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), SystemExit(1)])
def test_fallback_never_replaces_control_flow(is_async: bool, exc: BaseException) -> None:
    """on=BaseException still lets control-flow exceptions through unchanged."""
    body, _ = failing(exc)
    with pytest.raises(type(exc)) as info:
        run(fallback("x", on=BaseException), body, is_async)
    assert info.value is exc


def test_fallback_handler_args_do_not_depend_on_decorator_order() -> None:
    """A handler sees the same arguments whether fallback is above or below @classmethod."""

    def handler(exc: BaseException, *args: Any) -> tuple[Any, ...]:
        return args

    class C:
        @fallback(handler)
        @classmethod
        def above(cls, x: int) -> tuple[Any, ...]:
            raise Boom

        @classmethod
        @fallback(handler)
        def below(cls, x: int) -> tuple[Any, ...]:
            raise Boom

    assert C.above(1) == C.below(1)


async def test_fallback_async_handler_raising_keeps_context() -> None:
    """An async handler's own exception also carries the original failure as __context__."""
    err = Boom()

    async def handler(exc: BaseException) -> None:
        await asyncio.sleep(0)
        raise KeyError("handler")

    async def fn() -> None:
        raise err

    with pytest.raises(KeyError) as info:
        await fallback(handler).call(fn)
    assert info.value.__context__ is err


# --- errors -----------------------------------------------------------------------


def test_error_hierarchy() -> None:
    """The error tree is as drawn in section 4."""
    assert issubclass(ResilientError, Exception)
    for cls in (CircuitOpenError, BulkheadFullError, TimeoutExceededError):
        assert issubclass(cls, ResilientError)
    assert issubclass(TimeoutExceededError, TimeoutError)


def test_circuit_rejections_are_fresh_with_attributes(clock: FakeClock) -> None:
    """Each OPEN rejection is a new CircuitOpenError with .name and .retry_after; tracebacks do not grow."""
    breaker = circuit_breaker(failure_threshold=1, recovery_timeout=30, name="db", clock=clock)
    body, _ = failing(Boom())
    with pytest.raises(Boom):
        run(breaker, body, False)
    clock.advance(10)
    errors = []
    for _ in range(3):
        with pytest.raises(CircuitOpenError) as info:
            run(breaker, lambda: "never", False)
        errors.append(info.value)
    assert len({id(e) for e in errors}) == 3
    assert errors[0].name == "db"
    assert errors[0].retry_after == pytest.approx(20.0)
    depth = [len(list(_walk(e.__traceback__))) for e in errors]
    assert depth[0] == depth[1] == depth[2]


def _walk(tb: Any) -> Iterator[Any]:
    while tb is not None:
        yield tb
        tb = tb.tb_next


async def test_bulkhead_rejections_are_fresh(clock: FakeClock) -> None:
    """Each BulkheadFullError is a new object with .name and retry_after None."""
    gate = asyncio.Event()
    bh = bulkhead(1, name="pool", clock=clock)
    holder = asyncio.create_task(bh.call(gate.wait))
    await asyncio.sleep(0)
    errors = []
    with capture_events(CallRejected) as events:
        for _ in range(2):
            with pytest.raises(BulkheadFullError) as info:
                await bh.call(gate.wait)
            errors.append(info.value)
    gate.set()
    await holder
    assert errors[0] is not errors[1]
    assert (errors[0].name, errors[0].retry_after) == ("pool", None)
    assert [(type(e), e.policy, e.retry_after) for e in events] == [(BulkheadRejected, "bulkhead", None)] * 2  # type: ignore[attr-defined]


# --- events -----------------------------------------------------------------------

EXTRA_FIELDS: dict[type[Event], set[str]] = {
    RetryScheduled: {"attempt", "delay", "exception", "result"},
    RetriesExhausted: {"attempts", "exception", "reason"},
    TimeoutElapsed: {"seconds"},
    CircuitStateChanged: {"previous", "state"},
    CircuitOpened: {"previous", "state"},
    CircuitHalfOpened: {"previous", "state"},
    CircuitClosed: {"previous", "state"},
    CircuitIsolated: {"previous", "state"},
    CallRejected: {"retry_after"},
    CircuitRejected: {"retry_after"},
    BulkheadRejected: {"retry_after"},
    FallbackUsed: {"exception"},
    CallSucceeded: {"duration"},
    CallFailed: {"duration", "exception"},
}


@pytest.mark.parametrize("cls", list(EXTRA_FIELDS), ids=lambda c: c.__name__)
def test_event_classes_frozen_slotted_with_fields(cls: type[Event]) -> None:
    """Every event is a frozen, slotted dataclass with the common and its own fields."""
    names = {f.name for f in dataclasses.fields(cls)}
    assert {"policy", "name", "operation", "time"} | EXTRA_FIELDS[cls] <= names
    assert dataclasses.is_dataclass(cls)
    assert cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert "__slots__" in cls.__dict__
    assert all("__dict__" not in c.__dict__ for c in cls.__mro__[:-1])


@pytest.mark.parametrize(
    ("base", "subs"),
    [
        (CircuitStateChanged, (CircuitOpened, CircuitHalfOpened, CircuitClosed, CircuitIsolated)),
        (CallRejected, (CircuitRejected, BulkheadRejected)),
    ],
)
def test_event_bases(base: type[Event], subs: tuple[type[Event], ...]) -> None:
    """The base classes named in section 6 are bases of their variants."""
    assert all(issubclass(s, base) for s in subs)


def stacked(clock: FakeClock, bus: EventBus | None = None) -> Callable[[], Any]:
    """fallback > timeout(2) > retry(3, 0.25 s): attempts of 0.6 s, the third cut by the timeout."""

    @fallback("fb", name="f", bus=bus)
    @timeout(2, name="t", clock=clock, bus=bus)
    @retry(attempts=3, backoff=0.25, name="r", clock=clock, bus=bus)
    async def op() -> str:
        await clock.sleep(0.6)
        raise Boom

    return op


async def test_policy_event_strings_and_fields(clock: FakeClock) -> None:
    """Each policy's events carry its policy string, name, operation and clock time."""
    clock.advance(100)
    op = stacked(clock)
    with capture_events() as events:
        assert await op() == "fb"
    kinds = [(type(e).__name__, e.policy, e.name) for e in events]
    assert kinds == [
        ("RetryScheduled", "retry", "r"),
        ("RetryScheduled", "retry", "r"),
        ("TimeoutElapsed", "timeout", "t"),
        ("FallbackUsed", "fallback", "f"),
        ("CallSucceeded", "pipeline", None),
    ]
    assert all(e.operation == op.__qualname__ for e in events)
    sched, _, elapsed, used, ok = events
    assert isinstance(sched, RetryScheduled)
    assert isinstance(sched.exception, Boom)
    assert (sched.attempt, sched.delay, sched.result) == (1, 0.25, None)
    assert sched.time == pytest.approx(100.6)
    assert isinstance(elapsed, TimeoutElapsed)
    assert (elapsed.seconds, elapsed.time) == (2.0, 102.0)
    assert isinstance(used, FallbackUsed)
    assert isinstance(used.exception, TimeoutExceededError)
    assert isinstance(ok, CallSucceeded)
    assert ok.duration == pytest.approx(2.0)


def test_call_events_once_per_outer_call(is_async: bool, clock: FakeClock) -> None:
    """Stacked policies emit one CallFailed per outer call (not per attempt), with duration and error."""
    policy = resilient.pipeline(retry(attempts=3, backoff=1, clock=clock), fallback("x", on=KeyError))
    body, seen = failing(Boom(), Boom(), Boom())
    with capture_events(CallSucceeded, CallFailed) as events, pytest.raises(Boom) as info:
        run(policy, body, is_async)
    assert len(events) == 1
    assert isinstance(events[0], CallFailed)
    assert events[0].exception is info.value is seen[-1]
    assert events[0].duration == pytest.approx(2.0)


def test_subscribe_subscription_and_base_matching(bus: EventBus, clock: FakeClock) -> None:
    """subscribe returns a Subscription; a base matches subclasses; unsubscribe and `with` end delivery."""
    got: list[Event] = []
    sub = subscribe(got.append, CircuitStateChanged, bus=bus)
    assert isinstance(sub, Subscription)
    breaker = circuit_breaker(failure_threshold=1, clock=clock, bus=bus)
    body, _ = failing(Boom())
    with pytest.raises(Boom):
        run(breaker, body, False)
    assert [(type(e), e.policy) for e in got] == [(CircuitOpened, "circuit_breaker")]
    sub.unsubscribe()
    with subscribe(got.append, bus=bus):
        breaker.reset()
    breaker.isolate()
    assert [type(e) for e in got] == [CircuitOpened, CircuitClosed]


def test_sync_handlers_inline_in_order_once(bus: EventBus, clock: FakeClock) -> None:
    """Sync handlers run inline, in subscription order, exactly once per event."""
    log: list[str] = []
    bus.subscribe(lambda e: log.append("a"), RetryScheduled)
    bus.subscribe(lambda e: log.append("b"), Event)
    bus.subscribe(lambda e: log.append("c"), RetryScheduled, Event)

    def body() -> str:
        log.append("call")
        if log.count("call") == 1:
            raise Boom
        return "ok"

    run(retry(backoff=0, clock=clock, bus=bus), body, False)
    assert log[:5] == ["call", "a", "b", "c", "call"]


async def test_async_handlers_and_drain(bus: EventBus, clock: FakeClock) -> None:
    """Async handlers run as tasks held by the bus; drain() waits for them."""
    done: list[Event] = []

    async def handler(e: Event) -> None:
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        done.append(e)

    bus.subscribe(handler, TimeoutElapsed)
    with pytest.raises(TimeoutExceededError):
        await timeout(1, clock=clock, bus=bus).call(clock.sleep, 2)
    await bus.drain()
    assert [type(e) for e in done] == [TimeoutElapsed]


def test_failing_sync_handler_is_logged_and_contained(
    is_async: bool, bus: EventBus, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A raising handler is logged on 'resilient' and changes neither the outcome nor other handlers."""
    after: list[Event] = []

    def bad(e: Event) -> None:
        raise RuntimeError("handler bug")

    bus.subscribe(bad)
    bus.subscribe(after.append)
    err = Boom()
    body, _ = failing(err, err)
    with caplog.at_level(logging.ERROR, logger="resilient"), pytest.raises(Boom) as info:
        run(retry(attempts=2, backoff=0, clock=clock, bus=bus), body, is_async)
    assert info.value is err
    assert {type(e) for e in after} >= {RetryScheduled, RetriesExhausted, CallFailed}
    assert caplog.records
    assert all(r.name == "resilient" for r in caplog.records)


async def test_failing_async_handler_is_logged(
    bus: EventBus, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A raising async handler is logged on 'resilient' and the call's result stands."""

    async def bad(e: Event) -> None:
        raise RuntimeError("async handler bug")

    bus.subscribe(bad, FallbackUsed)
    with caplog.at_level(logging.ERROR, logger="resilient"):
        assert await fallback(1, bus=bus).call(_raise_boom) == 1
        await bus.drain()
    assert [r.name for r in caplog.records] == ["resilient"]


async def _raise_boom() -> int:
    raise Boom


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[type[Event]]:
    """Record every construction of a section-6 event (spying on __init__)."""
    made: list[type[Event]] = []
    for cls in EXTRA_FIELDS:
        original = cls.__init__

        def spy(self: Any, *a: Any, __orig: Any = original, **k: Any) -> None:
            made.append(type(self))
            __orig(self, *a, **k)

        monkeypatch.setattr(cls, "__init__", spy)
    return made


async def test_no_allocation_without_subscriber(
    bus: EventBus, clock: FakeClock, built: list[type[Event]]
) -> None:
    """With subscribers only for other types, retry/timeout/fallback/pipeline build no event."""
    bus.subscribe(lambda e: None, CircuitStateChanged)
    op = stacked(clock, bus)
    assert await op() == "fb"
    assert built == []
    with subscribe(lambda e: None, RetryScheduled, bus=bus):
        await op()
    assert set(built) == {RetryScheduled}


def test_capture_events_only_while_open(clock: FakeClock) -> None:
    """capture_events records what the default bus emits inside the block only."""
    body, _ = failing(Boom(), Boom(), Boom(), Boom())
    policy = retry(attempts=2, backoff=0, clock=clock)
    with capture_events() as events, pytest.raises(Boom):
        run(policy, body, False)
    count = len(events)
    with pytest.raises(Boom):
        run(policy, body, False)
    assert count == 3
    assert len(events) == 3


# --- bad configuration ------------------------------------------------------------

DURATIONS: list[tuple[object, type[Exception]]] = [
    (0, ValueError),
    (-1, ValueError),
    (timedelta(0), ValueError),
    (math.nan, ValueError),
]
DURATIONS += [(math.inf, ValueError), ("1", TypeError), (None, TypeError), (True, TypeError)]
ON: list[tuple[object, type[Exception]]] = [
    ("X", TypeError),
    ((ValueError, 3), TypeError),
    ((), ValueError),
    (KeyboardInterrupt, ValueError),
]
ON += [(asyncio.CancelledError, ValueError), ((GeneratorExit, SystemExit), ValueError)]
BAD: list[tuple[Any, str, object, type[Exception]]] = [
    *[(timeout, "seconds", v, e) for v, e in DURATIONS],
    *[(retry, "deadline", v, e) for v, e in DURATIONS if v is not None],
    *[(retry, "backoff", v, e) for v, e in DURATIONS if v not in (0, None, timedelta(0))],
    *[(retry, "attempts", v, e) for v, e in [(0, ValueError), (2.0, TypeError), (True, TypeError)]],
    *[(f, "on", v, e) for f in (retry, fallback) for v, e in ON],
    *[
        (f, p, v, TypeError)
        for f in (retry, timeout, fallback)
        for p, v in [("name", 5), ("clock", 1), ("bus", 1)]
    ],
    (retry, "on_result", 3, TypeError),
    (retry, "budget", 5, TypeError),
]


@pytest.mark.parametrize(("factory", "param", "value", "error"), BAD)
def test_bad_configuration_fails_at_factory_time(
    factory: Any, param: str, value: object, error: type[Exception]
) -> None:
    """Bad configuration raises TypeError/ValueError naming the parameter when the factory is called."""
    args = (value,) if param == "seconds" else () if factory is retry else (1,)
    kwargs = {} if param == "seconds" else {param: value}
    with pytest.raises(error, match=param):
        factory(*args, **kwargs)


@pytest.mark.parametrize(
    ("make", "param"),
    [(lambda: timeout(10**400), "seconds"), (lambda: retry(deadline=10**400), "deadline")],
    ids=["timeout", "retry-deadline"],
)
def test_huge_int_duration_is_a_value_error(make: Callable[[], Any], param: str) -> None:
    """A duration too large to be finite seconds is a ValueError naming the parameter, not OverflowError."""
    with pytest.raises(ValueError, match=param):
        make()


@pytest.mark.parametrize(
    "make",
    [lambda: retry(3), lambda: timeout(1, "name"), lambda: fallback(1, ValueError)],  # type: ignore[call-arg, call-overload]
    ids=["retry", "timeout", "fallback"],
)
def test_configuration_is_keyword_only(make: Callable[[], Any]) -> None:
    """Only the first argument of timeout and fallback may be positional; retry takes none."""
    with pytest.raises(TypeError):
        make()
