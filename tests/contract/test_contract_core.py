"""Black-box contract tests for API.md sections 1, 2, 5, 8 and 9 (public API only)."""

from __future__ import annotations

import asyncio
import datetime
import inspect
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

import resilient
from resilient import (
    BulkheadFullError,
    CircuitState,
    Policy,
    TimeoutExceededError,
    bulkhead,
    circuit_breaker,
    current_call,
    fallback,
    pipeline,
    pipeline_of,
    remaining,
    retry,
    timeout,
)
from resilient.events import CallFailed, CallSucceeded, Event, EventBus, RetriesExhausted
from resilient.testing import FakeClock, capture_events, set_testing

CONTROL_FLOW: list[type[BaseException]] = [
    asyncio.CancelledError,
    KeyboardInterrupt,
    SystemExit,
    GeneratorExit,
]
KINDS = ["retry", "timeout", "circuit_breaker", "bulkhead", "fallback", "pipeline"]
SYNC_KINDS = ["retry", "circuit_breaker", "bulkhead", "fallback", "pipeline"]


def make(kind: str, clock: FakeClock) -> Policy:
    """Build a policy of `kind` configured to catch everything it may catch."""
    if kind == "retry":
        return retry(attempts=3, on=BaseException, backoff=0.0, clock=clock)
    if kind == "timeout":
        return timeout(10.0, clock=clock)
    if kind == "circuit_breaker":
        return circuit_breaker(failure_threshold=1, on=BaseException, clock=clock)
    if kind == "bulkhead":
        return bulkhead(1, clock=clock)
    if kind == "fallback":
        return fallback("fell back", on=BaseException, clock=clock)
    return pipeline(
        fallback("fell back", on=BaseException),
        retry(attempts=3, on=lambda e: True, backoff=0.0, clock=clock),
        circuit_breaker(failure_threshold=1, on=BaseException, clock=clock),
        bulkhead(1, clock=clock),
        clock=clock,
    )


def leaves(policy: Policy) -> list[Policy]:
    """The flat list of policies a policy (or pipeline) is made of."""
    return list(policy.policies) if isinstance(policy, resilient.Pipeline) else [policy]


def state_of(breaker: resilient.CircuitBreaker) -> CircuitState:
    """The breaker's state (a call, so mypy does not narrow it across awaits)."""
    return breaker.state


def assert_neutral(policy: Policy) -> None:
    """No breaker moved and no bulkhead slot is held."""
    for p in leaves(policy):
        if isinstance(p, resilient.CircuitBreaker):
            assert p.state is CircuitState.CLOSED
        if isinstance(p, resilient.Bulkhead):
            assert (p.in_use, p.queued) == (0, 0)


# --- Section 1: decorator, executor, own state -------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_decorator_keeps_signature_asyncness_and_metadata(kind: str, clock: FakeClock) -> None:
    """A decorated coroutine function stays one, with the same signature and metadata."""

    async def fetch(key: str, *, n: int = 1) -> str:
        """Doc."""
        return key * n

    wrapped = make(kind, clock)(fetch)
    assert inspect.iscoroutinefunction(wrapped)
    assert inspect.signature(wrapped) == inspect.signature(fetch)
    assert (wrapped.__name__, wrapped.__qualname__, wrapped.__doc__) == (
        "fetch",
        fetch.__qualname__,
        "Doc.",
    )
    assert inspect.unwrap(wrapped) is fetch
    assert getattr(wrapped, "__wrapped__", None) is fetch
    assert await wrapped("a", n=2) == "aa"


@pytest.mark.parametrize("kind", SYNC_KINDS)
def test_sync_decorator_and_executor(kind: str, clock: FakeClock) -> None:
    """Sync functions stay sync, both decorated and through `call`."""

    def add(a: int, b: int = 0) -> int:
        return a + b

    policy = make(kind, clock)
    wrapped = policy(add)
    assert not inspect.iscoroutinefunction(wrapped)
    assert wrapped(1, b=2) == 3
    assert policy.call(add, 1, b=3) == 4


@pytest.mark.parametrize("kind", KINDS)
async def test_async_executor(kind: str, clock: FakeClock) -> None:
    """`await policy.call(fn, *args, **kwargs)` runs the coroutine function."""

    async def add(a: int, b: int = 0) -> int:
        return a + b

    assert await make(kind, clock).call(add, 1, b=2) == 3


def test_timeout_rejects_sync_function_at_decoration(clock: FakeClock) -> None:
    """`timeout` (alone or in a pipeline) refuses a sync function when decorating."""

    def f() -> None:
        return None

    with pytest.raises(TypeError):
        timeout(1.0)(f)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        pipeline(retry(), timeout(1.0))(f)


def test_timeout_call_rejects_sync_function() -> None:
    """`timeout.call` with a sync function raises TypeError instead of running it unguarded."""
    ran: list[int] = []
    with pytest.raises(TypeError):
        timeout(1.0).call(lambda: ran.append(1))  # type: ignore[arg-type,return-value,unused-coroutine]
    assert ran == []


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("is_async", [False, True])
def test_generators_rejected_at_decoration(kind: str, is_async: bool, clock: FakeClock) -> None:
    """Generator and async-generator functions raise TypeError at decoration time."""

    def gen() -> Iterator[int]:
        yield 1

    async def agen() -> AsyncIterator[int]:
        yield 1

    with pytest.raises(TypeError):
        make(kind, clock)(agen if is_async else gen)


def test_shared_breaker_state_across_functions(clock: FakeClock) -> None:
    """One breaker on three functions: failures of one open it for all."""
    breaker = circuit_breaker(failure_threshold=2, clock=clock)
    calls: list[str] = []

    @breaker
    def a() -> None:
        calls.append("a")
        raise ConnectionError

    @breaker
    def b() -> None:
        calls.append("b")
        raise ConnectionError

    @breaker
    def c() -> None:
        calls.append("c")

    for fn in (a, b):
        with pytest.raises(ConnectionError):
            fn()
    with pytest.raises(resilient.CircuitOpenError):
        c()
    assert calls == ["a", "b"]


async def test_retry_object_shares_nothing_between_concurrent_calls(clock: FakeClock) -> None:
    """Two concurrent calls through one retry each get their own attempt count."""
    policy = retry(attempts=2, on=ConnectionError, backoff=1.0, clock=clock)
    seen: dict[str, list[int]] = {"x": [], "y": []}

    async def f(tag: str) -> str:
        call = current_call()
        assert call is not None
        seen[tag].append(call.attempt)
        await asyncio.sleep(0)
        if call.attempt == 1:
            raise ConnectionError
        return tag

    assert list(await asyncio.gather(policy.call(f, "x"), policy.call(f, "y"))) == ["x", "y"]
    assert seen == {"x": [1, 2], "y": [1, 2]}


def test_stacking_folds_into_one_pipeline(clock: FakeClock) -> None:
    """Stacked decorators fold into one wrapper; `.policies` is outermost first."""
    f_, t_, r_, b_ = fallback(None), timeout(2.0), retry(), bulkhead(3)

    async def raw() -> None:
        return None

    fn = f_(t_(r_(b_(raw))))
    assert list(pipeline_of(fn).policies) == [f_, t_, r_, b_]
    assert getattr(fn, "__wrapped__", None) is raw


def test_pipeline_order_and_nesting_flatten() -> None:
    """`pipeline(a, pipeline(b, c))` flattens to a, b, c with `a` outermost."""
    a, b, c = fallback(1), retry(), bulkhead(1)
    p = pipeline(a, pipeline(b, c), name="p")
    assert list(p.policies) == [a, b, c]

    @p
    @timeout(1.0)
    async def fn() -> None:
        return None

    assert [x.kind for x in pipeline_of(fn).policies] == [
        "fallback",
        "retry",
        "bulkhead",
        "timeout",
    ]


def test_top_decorator_is_outermost_in_behaviour() -> None:
    """`@fallback` above `@retry` falls back after all attempts; below, retry never retries."""
    calls = 0

    def boom() -> str:
        nonlocal calls
        calls += 1
        raise ConnectionError

    outer = fallback("fb")(retry(attempts=3, backoff=0.0)(boom))
    assert outer() == "fb"
    assert calls == 3
    calls = 0
    assert pipeline(retry(attempts=3, backoff=0.0), fallback("fb")).call(boom) == "fb"
    assert calls == 1


def test_pipeline_is_a_policy_usable_as_decorator_twice() -> None:
    """A Pipeline decorates several functions and each keeps its own target."""
    p = pipeline(retry(attempts=2, backoff=0.0), fallback(0))

    @p
    def one() -> int:
        return 1

    @p
    def two() -> int:
        return 2

    assert (one(), two()) == (1, 2)
    assert isinstance(p, Policy)


class Service:
    """Methods decorated above and below classmethod/staticmethod."""

    factor = 10

    def __init__(self) -> None:
        self.n = 1

    @retry(attempts=2, backoff=0.0)
    async def method(self, x: int) -> int:
        return self.n + x

    @retry(attempts=2, backoff=0.0)
    @classmethod
    async def cls_above(cls, x: int) -> int:
        return cls.factor + x

    @classmethod
    @retry(attempts=2, backoff=0.0)
    async def cls_below(cls, x: int) -> int:
        return cls.factor + x

    @bulkhead(2)
    @staticmethod
    def static_above(x: int) -> int:
        return x * 2

    @staticmethod
    @bulkhead(2)
    def static_below(x: int) -> int:
        return x * 3


async def test_methods_bind_correctly() -> None:
    """Decorating works on methods and above and below classmethod/staticmethod."""
    s = Service()
    assert await s.method(1) == 2
    assert await Service.cls_above(1) == 11
    assert await s.cls_above(1) == 11
    assert await Service.cls_below(2) == 12
    assert Service.static_above(2) == 4
    assert s.static_above(2) == 4
    assert Service.static_below(2) == 6


def test_bound_method_keeps_name_and_wrapped() -> None:
    """A bound decorated method keeps `__name__`, and `__wrapped__` unwraps to the original."""
    s = Service()
    assert s.method.__name__ == "method"
    assert inspect.unwrap(s.method).__qualname__ == "Service.method"


async def test_method_attempt_sees_instance_state_after_retry() -> None:
    """A retried method call passes `self` again on every attempt."""

    class C:
        def __init__(self) -> None:
            self.tries = 0

        @retry(attempts=3, backoff=0.0)
        async def go(self) -> int:
            self.tries += 1
            if self.tries < 3:
                raise ConnectionError
            return self.tries

    assert await C().go() == 3


@pytest.mark.parametrize("kind", ["retry", "fallback", "pipeline"])
async def test_no_context_manager_form(kind: str, clock: FakeClock) -> None:
    """retry, fallback and pipeline are not async context managers."""
    with pytest.raises((TypeError, AttributeError)):
        async with make(kind, clock):  # type: ignore[attr-defined]
            pass


def test_module_level_policies_work_across_event_loops() -> None:
    """One decorated function runs under several `asyncio.run()` in a row."""
    breaker = circuit_breaker()
    bh = bulkhead(1, max_queue=1)

    @timeout(5.0)
    @breaker
    @bh
    async def f() -> int:
        await asyncio.sleep(0)
        return 1

    async def contended() -> list[int]:
        return list(await asyncio.gather(f(), f()))

    for _ in range(3):
        assert asyncio.run(contended()) == [1, 1]
    assert bh.in_use == 0


# --- Section 2: control-flow exceptions ---------------------------------------------------


@pytest.mark.parametrize("exc_type", CONTROL_FLOW)
@pytest.mark.parametrize("kind", KINDS)
async def test_control_flow_propagates_unhandled_async(
    kind: str, exc_type: type[BaseException], clock: FakeClock
) -> None:
    """A raised control-flow exception propagates as the same object, called once, neutrally."""
    policy = make(kind, clock)
    exc = exc_type()
    calls = 0

    async def body() -> str:
        nonlocal calls
        calls += 1
        raise exc

    with capture_events() as events, pytest.raises(exc_type) as info:
        await policy.call(body)
    assert info.value is exc
    assert calls == 1
    assert_neutral(policy)
    assert not [e for e in events if type(e).__name__ in {"RetryScheduled", "FallbackUsed"}]
    assert await policy.call(asyncio.sleep, 0, "ok") == "ok"


@pytest.mark.parametrize("exc_type", CONTROL_FLOW)
@pytest.mark.parametrize("kind", SYNC_KINDS)
def test_control_flow_propagates_unhandled_sync(
    kind: str, exc_type: type[BaseException], clock: FakeClock
) -> None:
    """Sync: a control-flow exception propagates as the same object, called once, neutrally."""
    policy = make(kind, clock)
    exc = exc_type()
    calls = 0

    def body() -> str:
        nonlocal calls
        calls += 1
        raise exc

    with pytest.raises(exc_type) as info:
        policy.call(body)
    assert info.value is exc
    assert calls == 1
    assert_neutral(policy)


@pytest.mark.parametrize("kind", SYNC_KINDS)
def test_base_exception_group_of_control_flow_is_not_handled(kind: str, clock: FakeClock) -> None:
    """A BaseExceptionGroup (not an Exception) is control flow too: never retried or caught."""
    policy = make(kind, clock)
    calls = 0
    group = BaseExceptionGroup("g", [KeyboardInterrupt()])

    def body() -> None:
        nonlocal calls
        calls += 1
        raise group

    with pytest.raises(BaseExceptionGroup) as info:
        policy.call(body)
    assert info.value is group
    assert calls == 1
    assert_neutral(policy)


@pytest.mark.parametrize("kind", KINDS)
async def test_real_cancellation_while_running(kind: str, clock: FakeClock) -> None:
    """Cancelling the task inside the body propagates CancelledError and frees everything."""
    policy = make(kind, clock)
    started, calls = asyncio.Event(), 0

    async def body() -> None:
        nonlocal calls
        calls += 1
        started.set()
        await asyncio.Event().wait()

    task = asyncio.ensure_future(policy.call(body))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls == 1
    assert_neutral(policy)


async def test_cancel_during_retry_backoff_is_not_retried(clock: FakeClock) -> None:
    """Cancellation during a backoff wait ends the call at once; no further attempt runs."""
    calls = 0
    gate = asyncio.Event()

    class SlowClock(FakeClock):
        async def sleep(self, seconds: float) -> None:
            gate.set()
            await asyncio.Event().wait()

    async def body() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError

    policy = retry(attempts=5, on=BaseException, backoff=1.0, clock=SlowClock())
    task = asyncio.ensure_future(policy.call(body))
    await gate.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls == 1


async def test_cancel_while_queued_in_bulkhead_frees_queue(clock: FakeClock) -> None:
    """A call cancelled in the bulkhead queue leaves it; the slot passes to the next waiter."""
    bh = bulkhead(1, max_queue=2, clock=clock)
    release = asyncio.Event()
    order: list[str] = []

    async def body(tag: str) -> None:
        order.append(tag)
        if tag == "first":
            await release.wait()

    first = asyncio.ensure_future(bh.call(body, "first"))
    await asyncio.sleep(0)
    queued = asyncio.ensure_future(bh.call(body, "cancelled"))
    third = asyncio.ensure_future(bh.call(body, "third"))
    await asyncio.sleep(0)
    assert bh.queued == 2
    queued.cancel()
    release.set()
    await asyncio.gather(first, third)
    assert queued.cancelled()
    assert order == ["first", "third"]
    assert (bh.in_use, bh.queued) == (0, 0)


async def test_cancelled_half_open_probe_frees_permit(clock: FakeClock) -> None:
    """A cancelled half-open probe leaves the breaker HALF_OPEN and its permit free at once."""
    breaker = circuit_breaker(failure_threshold=1, recovery_timeout=5.0, clock=clock)
    with pytest.raises(ConnectionError):
        await breaker.call(_raise_connection_error)
    clock.advance(5.0)
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    probe = asyncio.ensure_future(breaker.call(hang))
    await started.wait()
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert breaker.state is CircuitState.HALF_OPEN
    assert await breaker.call(asyncio.sleep, 0, "ok") == "ok"
    assert state_of(breaker) is CircuitState.CLOSED


async def _raise_connection_error() -> None:
    raise ConnectionError


@pytest.mark.parametrize("kind", KINDS)
async def test_outside_cancel_restores_cancelling_count(kind: str, clock: FakeClock) -> None:
    """After an outside cancel is caught by the caller, `cancelling()` is what it would be."""
    policy = make(kind, clock)
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    async def runner() -> int:
        try:
            await policy.call(hang)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            assert task is not None
            return task.uncancel()
        return -1

    task = asyncio.ensure_future(runner())
    await started.wait()
    task.cancel()
    assert await task == 0


# --- Section 5: call context and deadlines -------------------------------------------------


def test_no_call_context_outside_a_call() -> None:
    """Outside any pipeline call there is no context and no deadline."""
    assert current_call() is None
    assert remaining() is None


async def test_current_call_fields_async(clock: FakeClock) -> None:
    """Inside a timeout+retry call: operation, 1-based attempt, deadline and remaining."""
    seen: list[tuple[str, int, float | None, float | None, float | None]] = []

    @timeout(10.0, clock=clock)
    @retry(attempts=2, on=ConnectionError, backoff=1.0, clock=clock)
    async def op() -> None:
        call = current_call()
        assert call is not None
        seen.append((call.operation, call.attempt, call.deadline, call.remaining(), remaining()))
        if call.attempt == 1:
            raise ConnectionError

    clock.advance(100.0)
    await op()
    qual = op.__qualname__
    assert seen == [(qual, 1, 110.0, 10.0, 10.0), (qual, 2, 110.0, 9.0, 9.0)]


def test_current_call_in_sync_function_without_deadline() -> None:
    """current_call works in sync functions; without a timeout the deadline is None."""

    @retry(attempts=1)
    def op() -> tuple[str, int, float | None, float | None]:
        call = current_call()
        assert call is not None
        return call.operation, call.attempt, call.deadline, remaining()

    assert op() == (op.__qualname__, 1, None, None)


async def test_current_call_is_innermost_pipeline(clock: FakeClock) -> None:
    """A pipeline call nested in another reports its own operation, and the outer one after."""

    @retry(attempts=1)
    async def inner() -> str:
        call = current_call()
        assert call is not None
        return call.operation

    @retry(attempts=1)
    async def outer() -> tuple[str, str, str]:
        before = current_call()
        got = await inner()
        after = current_call()
        assert before is not None
        assert after is not None
        return before.operation, got, after.operation

    assert await outer() == (outer.__qualname__, inner.__qualname__, outer.__qualname__)


async def test_deadline_reaches_undecorated_nested_calls_and_tasks(clock: FakeClock) -> None:
    """A timeout's deadline is visible in plain nested calls and in tasks created inside."""

    async def helper() -> float | None:
        return remaining()

    async with timeout(4.0, clock=clock):
        assert await helper() == 4.0
        assert await asyncio.create_task(helper()) == 4.0
    assert remaining() is None


@pytest.mark.parametrize(("outer", "inner"), [(1.0, 10.0), (10.0, 1.0)])
async def test_inner_timeout_never_extends_outer(outer: float, inner: float, clock: FakeClock) -> None:
    """Nested timeouts: the effective deadline is the earliest one, and expiry happens then."""

    @timeout(inner, clock=clock)
    async def body() -> None:
        assert remaining() == min(outer, inner)
        await clock.sleep(100.0)

    with pytest.raises(TimeoutExceededError):
        async with timeout(outer, clock=clock):
            await body()
    assert clock.monotonic() == min(outer, inner)


async def test_remaining_never_negative(clock: FakeClock) -> None:
    """Past the deadline `remaining()` is 0, not negative."""
    seen: list[float | None] = []

    async def body() -> None:
        clock.advance(5.0)
        seen.append(remaining())
        await asyncio.sleep(0)

    with pytest.raises(TimeoutExceededError):
        await timeout(1.0, clock=clock).call(body)
    assert seen == [0.0]


async def test_timeout_accepts_timedelta(clock: FakeClock) -> None:
    """`timeout(timedelta)` sets the same deadline as float seconds."""
    async with timeout(datetime.timedelta(milliseconds=1500), clock=clock):
        assert remaining() == 1.5


@pytest.mark.parametrize("where", ["ambient", "own"])
async def test_retry_never_starts_wait_past_deadline(where: str, clock: FakeClock) -> None:
    """Retry gives up before a wait that would end past the deadline, re-raising the last error."""
    errors: list[ConnectionError] = []

    async def body() -> None:
        errors.append(ConnectionError(len(errors)))
        raise errors[-1]

    own = 2.5 if where == "own" else None
    policy: Policy = retry(attempts=10, on=ConnectionError, backoff=1.0, deadline=own, clock=clock)
    if where == "ambient":
        policy = pipeline(timeout(2.5, clock=clock), policy)
    with capture_events(RetriesExhausted) as events, pytest.raises(ConnectionError) as info:
        await policy.call(body)
    assert info.value is errors[-1]
    assert len(errors) == 3
    assert clock.monotonic() == 2.0
    assert [e.reason for e in events if isinstance(e, RetriesExhausted)] == ["deadline"]


def test_retry_sync_respects_own_deadline(clock: FakeClock) -> None:
    """A sync retry with `deadline=` never starts a blocking wait past it."""
    calls = 0

    def body() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError

    with pytest.raises(ConnectionError):
        retry(attempts=10, backoff=1.0, deadline=datetime.timedelta(seconds=1.5), clock=clock).call(body)
    assert calls == 2
    assert clock.monotonic() == 1.0


async def test_bulkhead_queue_bounded_by_inherited_deadline(clock: FakeClock) -> None:
    """A task started inside a timeout waits in a full bulkhead's queue only until the deadline."""
    bh = bulkhead(1, max_queue=1, clock=clock)
    hold = asyncio.Event()
    ran: list[str] = []

    async def body(tag: str) -> None:
        ran.append(tag)
        await hold.wait()

    first = asyncio.ensure_future(bh.call(body, "first"))
    await asyncio.sleep(0)
    async with timeout(2.0, clock=clock):
        waiter = asyncio.ensure_future(bh.call(body, "queued"))
    await asyncio.sleep(0)
    assert bh.queued == 1
    clock.advance(1.9)
    await asyncio.sleep(0)
    assert not waiter.done()
    clock.advance(0.1)
    with pytest.raises(BulkheadFullError):
        await waiter
    assert (ran, bh.queued) == (["first"], 0)
    hold.set()
    await first


async def test_bulkhead_queue_under_enclosing_timeout_frees_place(clock: FakeClock) -> None:
    """Queued under its own timeout, the call ends at the deadline and leaves the queue."""
    bh = bulkhead(1, max_queue=1, clock=clock)
    hold = asyncio.Event()
    first = asyncio.ensure_future(bh.call(hold.wait))
    await asyncio.sleep(0)
    waiter = asyncio.ensure_future(pipeline(timeout(2.0, clock=clock), bh).call(hold.wait))
    await asyncio.sleep(0)
    await clock.sleep(2.0)
    with pytest.raises((BulkheadFullError, TimeoutExceededError)):
        await waiter
    assert bh.queued == 0
    hold.set()
    await first
    assert bh.in_use == 0


async def test_bulkhead_rejects_at_once_when_deadline_already_passed(clock: FakeClock) -> None:
    """With no time left on the inherited deadline, a full bulkhead rejects instead of queueing."""
    bh = bulkhead(1, max_queue=5, clock=clock)
    hold = asyncio.Event()
    first = asyncio.ensure_future(bh.call(hold.wait))
    await asyncio.sleep(0)
    async with timeout(1.0, clock=clock):
        late = asyncio.ensure_future(bh.call(asyncio.sleep, 0))
    clock.advance(1.0)
    with pytest.raises(BulkheadFullError):
        await late
    assert bh.queued == 0
    hold.set()
    await first


# --- Sections 8 and 9: testing aids and exact points -------------------------------------


async def test_fake_clock_sleep_is_instant_and_recorded() -> None:
    """FakeClock.sleep advances virtual time at once."""
    clock = FakeClock(start=5.0)
    await clock.sleep(3.0)
    clock.advance(2.0)
    assert clock.monotonic() == 10.0


def test_capture_events_only_while_open() -> None:
    """capture_events records default-bus events inside the block and none after it."""

    @retry(attempts=1)
    def ok() -> int:
        return 1

    with capture_events() as events:
        ok()
    count = len(events)
    ok()
    assert len(events) == count
    assert [type(e) for e in events if isinstance(e, CallSucceeded)] == [CallSucceeded]
    assert all(isinstance(e, Event) for e in events)


def test_capture_events_ignores_other_buses() -> None:
    """Events emitted on a private bus are not captured from the default bus."""
    with capture_events() as events:
        retry(attempts=1, bus=EventBus()).call(lambda: 1)
    assert events == []


def test_set_testing_is_a_restoring_context_manager() -> None:
    """set_testing(True) skips waits inside the block; the previous mode is restored after."""
    clock = FakeClock()
    answers: list[object] = [ConnectionError(), "ok"]

    def load() -> object:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    with set_testing(True):
        with set_testing(False):
            pass
        assert retry(attempts=2, backoff=7.0, clock=clock).call(load) == "ok"
    assert clock.monotonic() == 0.0
    answers[:] = [ConnectionError(), "ok"]
    assert retry(attempts=2, backoff=7.0, clock=clock).call(load) == "ok"
    assert clock.monotonic() == 7.0


def test_set_testing_exported_from_both_modules() -> None:
    """`resilient.set_testing` and `resilient.testing.set_testing` are the same switch."""
    assert resilient.set_testing is set_testing


def test_exact_point_importable_names() -> None:
    """CircuitState and EventBus are importable from resilient; the bus from resilient.events."""
    assert resilient.EventBus is EventBus
    assert resilient.CircuitState is CircuitState


@pytest.mark.parametrize("kind", KINDS)
def test_event_policy_strings(kind: str, clock: FakeClock) -> None:
    """`.kind` names and the pipeline's outcome events use the documented strings."""
    policy = make(kind, clock)
    assert policy.kind == kind
    with capture_events(CallSucceeded, CallFailed) as events:
        asyncio.run(policy.call(asyncio.sleep, 0, "ok"))
    assert [e.policy for e in events] == ["pipeline"]


@pytest.mark.parametrize("seconds", [1.0, 2.0])
async def test_every_expiry_is_fresh_and_restores_cancelling(seconds: float, clock: FakeClock) -> None:
    """Each expiry raises a new TimeoutExceededError and leaves cancelling() unchanged."""
    policy = timeout(seconds, clock=clock)
    task = asyncio.current_task()
    assert task is not None
    before = task.cancelling()
    errors: list[TimeoutExceededError] = []
    for _ in range(2):
        try:
            await policy.call(clock.sleep, 100.0)
        except TimeoutExceededError as exc:
            errors.append(exc)
    assert len(errors) == 2
    assert errors[0] is not errors[1]
    assert isinstance(errors[0].__cause__, asyncio.CancelledError)
    assert errors[0].seconds == seconds
    assert isinstance(errors[0], TimeoutError)
    assert task.cancelling() == before


async def test_timeout_inside_breaker_counts_as_failure(clock: FakeClock) -> None:
    """A per-attempt TimeoutExceededError inside a breaker is an ordinary failure."""
    breaker = circuit_breaker(failure_threshold=1, clock=clock)
    with pytest.raises(TimeoutExceededError):
        await pipeline(breaker, timeout(1.0, clock=clock)).call(clock.sleep, 5.0)
    assert breaker.state is CircuitState.OPEN


async def test_closed_breaker_never_serialises(clock: FakeClock) -> None:
    """Two calls can be inside a CLOSED breaker at the same time."""
    breaker = circuit_breaker(clock=clock)
    inside, both = 0, asyncio.Event()

    async def body() -> None:
        nonlocal inside
        inside += 1
        if inside == 2:
            both.set()
        await both.wait()

    await asyncio.wait_for(asyncio.gather(breaker.call(body), breaker.call(body)), 1.0)


def test_sync_breaker_and_bulkhead_are_thread_safe() -> None:
    """Many threads through one sync bulkhead never exceed its limit and leave it empty."""
    bh = bulkhead(2, max_queue=100)
    breaker = circuit_breaker(failure_threshold=1000)
    active, peak, lock = 0, 0, threading.Lock()

    @breaker
    @bh
    def work() -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        with lock:
            active -= 1

    threads = [threading.Thread(target=lambda: [work() for _ in range(50)]) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak <= 2
    assert (bh.in_use, bh.queued) == (0, 0)


@pytest.mark.parametrize("kind", KINDS)
def test_clock_accepted_everywhere(kind: str, clock: FakeClock) -> None:
    """`clock=` accepts a FakeClock on every policy and the pipeline factory."""
    assert make(kind, clock) is not None


def test_subscribe_accepts_sync_and_async_handlers() -> None:
    """Sync handlers run inline; async handlers run as tasks the bus drains."""
    bus = EventBus()
    got: list[str] = []

    def sync_handler(event: Event) -> None:
        got.append("sync")

    async def async_handler(event: Event) -> None:
        got.append("async")

    async def main() -> None:
        with (
            resilient.subscribe(sync_handler, CallSucceeded, bus=bus),
            resilient.subscribe(async_handler, CallSucceeded, bus=bus),
        ):
            await retry(attempts=1, bus=bus).call(asyncio.sleep, 0)
            assert got == ["sync"]
            await bus.drain()
        assert got == ["sync", "async"]

    asyncio.run(main())


def test_typed_error_attributes() -> None:
    """Rejection errors carry `.name` and `.retry_after` with the documented types."""
    bh = bulkhead(1, name="db")
    holder: list[Callable[[], Any]] = []

    @bh
    def inner() -> None:
        with pytest.raises(BulkheadFullError) as info:
            bh.call(lambda: None)
        holder.append(lambda: info.value)

    inner()
    err = holder[0]()
    assert (err.name, err.retry_after) == ("db", None)
