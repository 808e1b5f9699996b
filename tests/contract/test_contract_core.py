"""Black-box contract tests for API.md sections 1, 2, 5, 8 and 9 (public API only)."""

from __future__ import annotations

import asyncio
import copy
import datetime
import inspect
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any, assert_type

import pytest

import resilient
from resilient import (
    Bulkhead,
    BulkheadFullError,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    Gate,
    Pipeline,
    Policy,
    TimeoutExceededError,
    bulkhead,
    circuit_breaker,
    current_call,
    fallback,
    gate,
    pipeline,
    pipeline_of,
    remaining,
    retry,
    timeout,
)
from resilient.events import CallSucceeded, Event, EventBus, RetriesExhausted
from resilient.testing import FakeClock, capture_events, set_testing

CONTROL_FLOW: list[type[BaseException]] = [
    asyncio.CancelledError,
    KeyboardInterrupt,
    SystemExit,
    GeneratorExit,
]
KINDS = ["retry", "timeout", "circuit_breaker", "bulkhead", "fallback", "gate", "pipeline"]
SYNC_KINDS = [k for k in KINDS if k != "timeout"]


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
    if kind == "gate":
        return gate(clock=clock)
    return pipeline(
        fallback("fell back", on=BaseException),
        retry(attempts=3, on=lambda e: True, backoff=0.0, clock=clock),
        circuit_breaker(failure_threshold=1, on=BaseException, clock=clock),
        bulkhead(1, clock=clock),
        clock=clock,
    )


def state_of(breaker: CircuitBreaker) -> CircuitState:
    """The breaker's state (a call, so mypy does not narrow it across awaits)."""
    return breaker.state


def assert_neutral(policy: Policy) -> None:
    """No breaker moved and no bulkhead slot is held."""
    for p in policy.policies if isinstance(policy, Pipeline) else [policy]:
        if isinstance(p, CircuitBreaker):
            assert p.state is CircuitState.CLOSED
        if isinstance(p, Bulkhead):
            assert (p.in_use, p.queued) == (0, 0)
        if isinstance(p, Gate):
            assert p.in_flight == 0


async def hang(started: asyncio.Event | None = None) -> None:
    """Signal `started`, then wait forever (until cancelled)."""
    if started is not None:
        started.set()
    await asyncio.Event().wait()


async def running(policy: Policy) -> asyncio.Future[None]:
    """Start a call of `policy` that hangs, and return once it is inside the policy."""
    started = asyncio.Event()
    task: asyncio.Future[None] = asyncio.ensure_future(policy.call(hang, started))
    await started.wait()
    return task


async def stop(task: asyncio.Future[None]) -> None:
    """Cancel `task` and wait for it to end."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def fail() -> None:
    """A dependency that is down."""
    raise ConnectionError


async def afail() -> None:
    """An async dependency that is down."""
    raise ConnectionError


# --- Section 1: decorator, executor, own state -------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_async_decorator_keeps_signature_metadata_and_executor(kind: str, clock: FakeClock) -> None:
    """A decorated coroutine function stays one, same signature/metadata; `call` runs it too."""

    async def fetch(key: str, *, n: int = 1) -> str:
        """Doc."""
        return key * n

    policy = make(kind, clock)
    wrapped = policy(fetch)
    assert inspect.iscoroutinefunction(wrapped)
    assert inspect.signature(wrapped) == inspect.signature(fetch)
    assert (wrapped.__name__, wrapped.__qualname__, wrapped.__doc__) == ("fetch", fetch.__qualname__, "Doc.")
    assert getattr(wrapped, "__wrapped__", None) is fetch
    assert await wrapped("a", n=2) == "aa"
    assert await policy.call(fetch, "b", n=3) == "bbb"


@pytest.mark.parametrize("kind", SYNC_KINDS)
def test_sync_decorator_and_executor(kind: str, clock: FakeClock) -> None:
    """Sync functions stay sync, both decorated and through `call`."""

    def add(a: int, b: int = 0) -> int:
        return a + b

    policy = make(kind, clock)
    assert not inspect.iscoroutinefunction(policy(add))
    assert policy(add)(1, b=2) == 3
    assert policy.call(add, 1, b=3) == 4


def test_timeout_rejects_sync_function_at_decoration() -> None:
    """`timeout` alone, in a (nested) pipeline, or stacked on a sync wrapper refuses a sync function."""
    with pytest.raises(TypeError):
        timeout(1.0)(fail)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        pipeline(retry(), pipeline(timeout(1.0)))(fail)
    with pytest.raises(TypeError):
        timeout(1.0)(retry()(fail))  # type: ignore[arg-type]


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
    """One breaker on three functions: failures of two open it for the third."""
    breaker = circuit_breaker(failure_threshold=2, clock=clock)
    a, b = breaker(fail), breaker(lambda: fail())
    ran: list[int] = []
    c = breaker(lambda: ran.append(1))
    for fn in (a, b):
        with pytest.raises(ConnectionError):
            fn()
    with pytest.raises(CircuitOpenError):
        c()
    assert ran == []


async def test_shared_bulkhead_counts_across_functions(clock: FakeClock) -> None:
    """One bulkhead on two functions: a call of one fills the slot for the other."""
    bh = bulkhead(1, clock=clock)
    holder = asyncio.ensure_future(bh(hang)())
    await asyncio.sleep(0)
    with pytest.raises(BulkheadFullError):
        await bh(asyncio.sleep)(0)
    await stop(holder)
    assert bh.in_use == 0


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


def test_stacking_folds_into_one_pipeline_without_touching_the_inner_wrapper() -> None:
    """Stacked decorators fold into one wrapper (outermost first); the inner one is unchanged."""
    f_, t_, r_, b_ = fallback(None), timeout(2.0), retry(), bulkhead(3)

    async def raw() -> None:
        return None

    inner = r_(b_(raw))
    fn = f_(t_(inner))
    assert list(pipeline_of(fn).policies) == [f_, t_, r_, b_]
    assert list(pipeline_of(inner).policies) == [r_, b_]
    assert getattr(fn, "__wrapped__", None) is raw
    calls: list[int] = []

    def boom() -> None:
        calls.append(1)
        fail()

    guarded = retry(attempts=2, backoff=0.0)(boom)
    assert fallback("fb")(guarded)() == "fb"
    with pytest.raises(ConnectionError):
        guarded()
    assert len(calls) == 4


def test_pipeline_order_and_nesting_flatten() -> None:
    """`pipeline(a, pipeline(b, c))` flattens to a, b, c; stacking keeps the pipeline itself intact."""
    a, b, c = fallback(1), retry(), bulkhead(1)
    p = pipeline(a, pipeline(b, c), name="p")
    assert list(p.policies) == [a, b, c]

    async def raw() -> None:
        return None

    fn = p(raw)
    assert pipeline_of(fn) is p
    assert [x.kind for x in pipeline_of(timeout(1.0)(fn)).policies] == [
        "timeout",
        "fallback",
        "retry",
        "bulkhead",
    ]
    assert list(p.policies) == [a, b, c]


def test_top_decorator_is_outermost_in_behaviour() -> None:
    """`fallback` outside `retry` falls back after all attempts; inside, retry never retries."""
    calls: list[int] = []

    def boom() -> str:
        calls.append(1)
        raise ConnectionError

    assert fallback("fb")(retry(attempts=3, backoff=0.0)(boom))() == "fb"
    assert pipeline(retry(attempts=3, backoff=0.0), fallback("fb")).call(boom) == "fb"
    assert len(calls) == 4


class Service:
    """Methods decorated above and below classmethod/staticmethod, stacked across them."""

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

    @fallback(-1)
    @classmethod
    @retry(attempts=2, backoff=0.0)
    def across(cls, x: int) -> int:
        raise ConnectionError


async def test_methods_bind_correctly() -> None:
    """Decorating works on methods and above and below classmethod/staticmethod."""
    s = Service()
    assert await s.method(1) == 2
    assert await Service.method(s, 2) == 3
    assert await Service.cls_above(1) == await s.cls_above(1) == 11
    assert await Service.cls_below(2) == 12
    assert Service.static_above(2) == s.static_above(2) == 4
    assert Service.static_below(2) == 6
    assert Service.across(1) == -1
    assert [p.kind for p in pipeline_of(Service.across).policies] == ["fallback", "retry"]
    assert list(inspect.signature(s.method).parameters) == list(
        inspect.signature(Service.cls_above).parameters
    )
    assert inspect.unwrap(s.method).__qualname__ == "Service.method"


@pytest.mark.parametrize("kind", ["retry", "fallback", "gate", "pipeline"])
async def test_no_context_manager_form(kind: str, clock: FakeClock) -> None:
    """retry, fallback, gate and pipeline are not async context managers."""
    with pytest.raises((TypeError, AttributeError)):
        async with make(kind, clock):  # type: ignore[attr-defined]
            pass


def test_module_level_policies_work_across_event_loops() -> None:
    """One decorated function runs (contended) under several `asyncio.run()` in a row."""
    bh = bulkhead(1, max_queue=1)

    @timeout(5.0)
    @circuit_breaker()
    @bh
    async def f() -> int:
        await asyncio.sleep(0)
        return 1

    async def contended() -> list[int]:
        return list(await asyncio.gather(f(), f()))

    for _ in range(3):
        assert asyncio.run(contended()) == [1, 1]
    assert bh.in_use == 0


def test_decorated_function_is_copyable() -> None:
    """Like a plain function (and a functools.wraps wrapper), a decorated one survives copy/deepcopy."""
    guarded = retry()(fail)
    assert copy.copy(guarded) is guarded
    assert copy.deepcopy({"handler": guarded})["handler"] is guarded


# --- Section 2: control-flow exceptions ---------------------------------------------------


@pytest.mark.parametrize("exc_type", CONTROL_FLOW)
@pytest.mark.parametrize("kind", KINDS)
async def test_control_flow_propagates_unhandled_async(
    kind: str, exc_type: type[BaseException], clock: FakeClock
) -> None:
    """A raised control-flow exception propagates as the same object, called once, neutrally."""
    policy, exc, calls = make(kind, clock), exc_type(), []

    async def body() -> str:
        calls.append(1)
        raise exc

    with capture_events() as events, pytest.raises(exc_type) as info:
        await policy.call(body)
    assert info.value is exc
    assert len(calls) == 1
    assert_neutral(policy)
    assert not [e for e in events if type(e).__name__ in {"RetryScheduled", "FallbackUsed"}]
    assert await policy.call(asyncio.sleep, 0, "ok") == "ok"


@pytest.mark.parametrize("exc_type", [*CONTROL_FLOW, BaseExceptionGroup])
@pytest.mark.parametrize("kind", SYNC_KINDS)
def test_control_flow_propagates_unhandled_sync(
    kind: str, exc_type: type[BaseException], clock: FakeClock
) -> None:
    """Sync (and a BaseExceptionGroup, not an Exception): same object, called once, neutrally."""
    policy, calls = make(kind, clock), []
    exc = BaseExceptionGroup("g", [KeyboardInterrupt()]) if exc_type is BaseExceptionGroup else exc_type()

    def body() -> str:
        calls.append(1)
        raise exc

    with pytest.raises(exc_type) as info:
        policy.call(body)
    assert info.value is exc
    assert len(calls) == 1
    assert_neutral(policy)


@pytest.mark.parametrize("exc_type", CONTROL_FLOW)
@pytest.mark.parametrize("is_async", [False, True])
async def test_context_manager_forms_never_handle_control_flow(
    exc_type: type[BaseException], is_async: bool, clock: FakeClock
) -> None:
    """`with`/`async with` breaker, bulkhead (and timeout) let control flow through, neutrally."""
    breaker = circuit_breaker(failure_threshold=1, on=BaseException, clock=clock)
    bh = bulkhead(1, clock=clock)

    async def raise_inside(cm: Any, exc: BaseException) -> None:
        if is_async:
            async with cm:
                raise exc
        with cm:
            raise exc

    for cm in [breaker, bh, *([timeout(5.0, clock=clock)] if is_async else [])]:
        exc = exc_type()
        with pytest.raises(exc_type) as info:
            await raise_inside(cm, exc)
        assert info.value is exc
    assert_neutral(pipeline(breaker, bh))


def test_control_flow_from_user_callbacks_propagates() -> None:
    """Control flow raised by a predicate, a backoff callable or a fallback handler propagates as is."""
    ki, ce = KeyboardInterrupt(), asyncio.CancelledError()

    def raise_ki(*_: object) -> bool:
        raise ki

    def raise_ce(*_: object) -> None:
        raise ce

    for policy in (retry(on=raise_ki), retry(backoff=raise_ki), circuit_breaker(on=raise_ki)):
        with pytest.raises(KeyboardInterrupt) as info:
            policy.call(fail)
        assert info.value is ki
    with pytest.raises(asyncio.CancelledError) as got:
        fallback(raise_ce).call(fail)
    assert got.value is ce
    assert isinstance(got.value.__context__, ConnectionError)


@pytest.mark.parametrize("kind", KINDS)
async def test_real_cancellation_while_running(kind: str, clock: FakeClock) -> None:
    """Cancelling the task inside the body propagates, frees everything, and restores cancelling()."""
    policy, started = make(kind, clock), asyncio.Event()

    async def runner() -> int:
        try:
            await policy.call(hang, started)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            assert task is not None
            return task.uncancel()
        return -1

    task = asyncio.ensure_future(runner())
    await started.wait()
    task.cancel()
    assert await task == 0
    assert_neutral(policy)


async def test_cancel_during_retry_backoff_is_not_retried() -> None:
    """Cancellation during a backoff wait ends the call at once; no further attempt runs."""
    gate, calls = asyncio.Event(), []

    class StuckClock(FakeClock):
        async def sleep(self, seconds: float) -> None:
            await hang(gate)

    async def body() -> None:
        calls.append(1)
        raise ConnectionError

    task = asyncio.ensure_future(
        retry(attempts=5, on=BaseException, backoff=1.0, clock=StuckClock()).call(body)
    )
    await gate.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls == [1]


@pytest.mark.parametrize("woken", [False, True])
async def test_cancelled_waiter_passes_its_turn(woken: bool, clock: FakeClock) -> None:
    """A call cancelled while queued (or woken but not yet running) hands the slot to the next."""
    bh, order = bulkhead(1, max_queue=2, clock=clock), []

    async def body(tag: str) -> None:
        order.append(tag)

    async with bh:
        cancelled = asyncio.ensure_future(bh.call(body, "cancelled"))
        third = asyncio.ensure_future(bh.call(body, "third"))
        await asyncio.sleep(0)
        assert bh.queued == 2
        if not woken:
            cancelled.cancel()
    cancelled.cancel()  # when woken: the slot was just handed to it, and it has not run yet
    await asyncio.gather(third, cancelled, return_exceptions=True)
    assert cancelled.cancelled()
    assert order == ["third"]
    assert (bh.in_use, bh.queued) == (0, 0)


async def test_cancelled_half_open_probe_frees_permit(clock: FakeClock) -> None:
    """A cancelled half-open probe leaves the breaker HALF_OPEN and its permit free at once."""
    breaker = circuit_breaker(failure_threshold=1, recovery_timeout=5.0, clock=clock)
    with pytest.raises(ConnectionError):
        await breaker.call(afail)
    clock.advance(5.0)
    probe = await running(breaker)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert breaker.state is CircuitState.HALF_OPEN
    assert await breaker.call(asyncio.sleep, 0, "ok") == "ok"
    assert state_of(breaker) is CircuitState.CLOSED


async def test_cancelled_call_is_not_recorded_in_rate_window(clock: FakeClock) -> None:
    """A cancelled call counts toward neither failures nor minimum_calls in rate mode."""
    breaker = circuit_breaker(failure_rate=0.5, window=4, minimum_calls=2, clock=clock)
    with pytest.raises(ConnectionError):
        await breaker.call(afail)
    await stop(await running(breaker))
    assert breaker.state is CircuitState.CLOSED


# --- Section 5: call context and deadlines -------------------------------------------------


async def test_current_call_fields_async(clock: FakeClock) -> None:
    """Inside a timeout+retry call: operation, 1-based attempt, deadline and remaining."""
    seen: list[tuple[str, int, float | None, float | None, float | None]] = []
    assert (current_call(), remaining()) == (None, None)

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


async def test_current_call_is_innermost_pipeline_and_per_call(clock: FakeClock) -> None:
    """A nested pipeline call reports its own context; concurrent calls see their own deadlines."""

    @retry(attempts=1)
    async def inner() -> tuple[str, float | None]:
        await asyncio.sleep(0)
        call = current_call()
        assert call is not None
        return call.operation, call.deadline

    @retry(attempts=1)
    async def outer() -> tuple[str, str, str]:
        before, (got, _), after = current_call(), await inner(), current_call()
        assert before is not None
        assert after is not None
        return before.operation, got, after.operation

    assert await outer() == (outer.__qualname__, inner.__qualname__, outer.__qualname__)
    under = [timeout(s, clock=clock)(inner)() for s in (1.0, 2.0)]
    assert [d for _, d in await asyncio.gather(*under, inner())] == [1.0, 2.0, None]


async def test_deadline_reaches_nested_calls_tasks_threads_and_sync_code(clock: FakeClock) -> None:
    """A timeout's deadline is visible in plain nested calls, created tasks, to_thread and sync code."""

    async def helper() -> float | None:
        return remaining()

    async with timeout(4.0, clock=clock):
        assert await helper() == 4.0
        assert await asyncio.create_task(helper()) == 4.0
        assert await asyncio.to_thread(remaining) == 4.0
        assert retry(attempts=1).call(remaining) == 4.0
    assert remaining() is None


@pytest.mark.parametrize(("outer", "inner"), [(1.0, 10.0), (10.0, 1.0), (1.0, 1.0)])
async def test_inner_timeout_never_extends_outer(outer: float, inner: float, clock: FakeClock) -> None:
    """Nested timeouts: the effective deadline is the earliest one, and expiry happens then."""

    @timeout(datetime.timedelta(seconds=inner), clock=clock)
    async def body() -> None:
        assert remaining() == min(outer, inner)
        await clock.sleep(100.0)

    task = asyncio.current_task()
    assert task is not None
    with pytest.raises(TimeoutExceededError):
        await timeout(outer, clock=clock).call(body)
    assert clock.monotonic() == min(outer, inner)
    assert task.cancelling() == 0


@pytest.mark.parametrize("where", ["ambient", "own", "sync-in-ambient"])
async def test_retry_never_starts_wait_past_deadline(where: str, clock: FakeClock) -> None:
    """Retry gives up before a wait that would end past the deadline, re-raising the last error."""
    errors: list[ConnectionError] = []

    def body() -> None:
        errors.append(ConnectionError(len(errors)))
        raise errors[-1]

    async def abody() -> None:
        body()

    own = datetime.timedelta(seconds=2.5) if where == "own" else None
    policy = retry(attempts=10, on=ConnectionError, backoff=1.0, deadline=own, clock=clock)

    async def run() -> None:
        if where == "own":
            return await policy.call(abody)
        async with timeout(2.5, clock=clock):
            await policy.call(abody) if where == "ambient" else policy.call(body)

    with capture_events(RetriesExhausted) as events, pytest.raises(ConnectionError) as info:
        await run()
    assert info.value is errors[-1]
    assert len(errors) == 3
    assert clock.monotonic() == 2.0
    assert [e.reason for e in events if isinstance(e, RetriesExhausted)] == ["deadline"]


async def test_bulkhead_queue_bounded_by_inherited_deadline(clock: FakeClock) -> None:
    """A task started inside a timeout waits in a full bulkhead's queue only until the deadline."""
    bh = bulkhead(1, max_queue=1, clock=clock)
    first = await running(bh)
    async with timeout(2.0, clock=clock):
        waiter = asyncio.ensure_future(bh.call(asyncio.sleep, 0))
    await asyncio.sleep(0)
    assert bh.queued == 1
    clock.advance(1.9)
    await asyncio.sleep(0)
    assert not waiter.done()
    clock.advance(0.1)
    with pytest.raises(BulkheadFullError):
        await waiter
    assert bh.queued == 0
    await stop(first)


async def test_bulkhead_rejects_at_once_when_deadline_already_passed(clock: FakeClock) -> None:
    """With no time left on the inherited deadline, a full bulkhead rejects instead of queueing."""
    bh = bulkhead(1, max_queue=5, clock=clock)
    first = await running(bh)
    async with timeout(1.0, clock=clock):
        late = asyncio.ensure_future(bh.call(asyncio.sleep, 0))
    clock.advance(1.0)
    with pytest.raises(BulkheadFullError):
        await late
    assert bh.queued == 0
    await stop(first)


# --- Sections 8 and 9: testing aids and exact points -------------------------------------


async def test_fake_clock_sleep_is_instant_and_recorded() -> None:
    """FakeClock.sleep advances virtual time at once; advance() moves it without sleeping."""
    clock = FakeClock(start=5.0)
    await clock.sleep(3.0)
    clock.advance(2.0)
    assert clock.monotonic() == 10.0


def test_capture_events_only_while_open_and_only_default_bus() -> None:
    """capture_events records default-bus events inside the block, nothing after it or elsewhere."""
    with capture_events() as events:
        retry(attempts=1).call(lambda: 1)
        retry(attempts=1, bus=EventBus()).call(lambda: 1)
    retry(attempts=1).call(lambda: 1)
    assert [type(e) for e in events] == [CallSucceeded]
    assert all(isinstance(e, Event) for e in events)


def test_set_testing_is_a_global_restoring_context_manager() -> None:
    """set_testing(True) skips waits (in other threads too); the previous mode is restored after."""
    clock, sleeps = FakeClock(), []

    def load() -> None:
        calls = [ConnectionError(), None]

        def body() -> None:
            if (answer := calls.pop(0)) is not None:
                raise answer

        retry(attempts=2, backoff=7.0, clock=clock).call(body)

    with set_testing(True):
        with set_testing(False):
            pass
        load()
        worker = threading.Thread(target=load)
        worker.start()
        worker.join()
        sleeps.append(clock.monotonic())
    load()
    assert sleeps == [0.0]
    assert clock.monotonic() == 7.0


def test_exact_point_importable_names_and_typed_attributes() -> None:
    """CircuitState, EventBus and set_testing live where documented; attributes have their types."""
    assert resilient.set_testing is set_testing
    assert resilient.EventBus is EventBus
    assert resilient.CircuitState is CircuitState
    breaker = circuit_breaker(failure_threshold=1, name="db")
    with pytest.raises(ConnectionError):
        breaker.call(fail)
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(fail)
    assert assert_type(info.value.name, str | None) == "db"
    assert isinstance(assert_type(info.value.retry_after, float | None), float)
    assert assert_type(TimeoutExceededError(1.5).seconds, float) == 1.5


async def test_each_policy_emits_its_policy_string(clock: FakeClock) -> None:
    """Every decision event carries the policy string of the policy that made it."""

    async def lookup() -> int:
        raise ConnectionError

    bh = bulkhead(1, clock=clock)
    with capture_events() as events:
        with pytest.raises(ConnectionError):
            await retry(attempts=2, backoff=0.0, clock=clock).call(afail)
        with pytest.raises(TimeoutExceededError):
            await timeout(1.0, clock=clock).call(clock.sleep, 5.0)
        breaker = circuit_breaker(failure_threshold=1, clock=clock)
        with pytest.raises(ConnectionError):
            await breaker.call(afail)
        with pytest.raises(CircuitOpenError):
            await breaker.call(afail)
        holder = await running(bh)
        with pytest.raises(BulkheadFullError):
            await bh.call(afail)
        assert await fallback(1).call(lookup) == 1
    await stop(holder)
    kinds = {type(e).__name__: e.policy for e in events}
    assert kinds == {
        "RetryScheduled": "retry",
        "RetriesExhausted": "retry",
        "TimeoutElapsed": "timeout",
        "CircuitOpened": "circuit_breaker",
        "CircuitRejected": "circuit_breaker",
        "BulkheadRejected": "bulkhead",
        "FallbackUsed": "fallback",
        "CallFailed": "pipeline",
        "CallSucceeded": "pipeline",
    }


def test_full_jitter_bounds() -> None:
    """The k-th full-jitter wait is uniform in [0, min(max_delay, initial * multiplier ** (k - 1))]."""
    strategy = resilient.backoff.exponential(initial=1.0, multiplier=2.0, max_delay=5.0, jitter="full")
    clock = FakeClock()
    policy = retry(attempts=5, backoff=strategy, clock=clock)
    waits: list[list[float]] = []
    for _ in range(300):
        clock.sleeps.clear()
        with pytest.raises(ConnectionError):
            policy.call(fail)
        waits.append(list(clock.sleeps))
    for k, bound in enumerate([1.0, 2.0, 4.0, 5.0]):
        column = [w[k] for w in waits]
        assert all(0.0 <= x <= bound for x in column)
        assert max(column) > 0.8 * bound
        assert min(column) < 0.2 * bound


@pytest.mark.parametrize("seconds", [1.0, 2.0])
async def test_every_expiry_is_fresh_and_restores_cancelling(seconds: float, clock: FakeClock) -> None:
    """Each expiry raises a new TimeoutExceededError and leaves cancelling() unchanged."""
    policy, task = timeout(seconds, clock=clock), asyncio.current_task()
    assert task is not None
    errors: list[TimeoutExceededError] = []
    for _ in range(2):
        with pytest.raises(TimeoutExceededError) as info:
            await policy.call(clock.sleep, 100.0)
        errors.append(info.value)
    assert errors[0] is not errors[1]
    assert isinstance(errors[0].__cause__, asyncio.CancelledError)
    assert errors[0].seconds == seconds
    assert isinstance(errors[0], TimeoutError)
    assert task.cancelling() == 0


async def test_retried_timeouts_restore_cancelling(clock: FakeClock) -> None:
    """A retry that absorbs per-attempt timeouts leaves cancelling() at 0 for later stdlib timeouts."""
    p = pipeline(retry(attempts=3, on=TimeoutError, backoff=0.0, clock=clock), timeout(1.0, clock=clock))
    with pytest.raises(TimeoutExceededError):
        await p.call(clock.sleep, 5.0)
    task = asyncio.current_task()
    assert task is not None
    assert (task.cancelling(), clock.monotonic()) == (0, 3.0)


async def test_timeout_inside_breaker_counts_as_failure(clock: FakeClock) -> None:
    """A per-attempt TimeoutExceededError inside a breaker is an ordinary failure."""
    breaker = circuit_breaker(failure_threshold=1, clock=clock)
    with pytest.raises(TimeoutExceededError):
        await pipeline(breaker, timeout(1.0, clock=clock)).call(clock.sleep, 5.0)
    assert breaker.state is CircuitState.OPEN


@pytest.mark.parametrize("param", ["failure_rate", "slow_call_rate"])
@pytest.mark.parametrize("value", [0.0, -0.1, 1.01, float("nan"), float("inf")])
def test_rates_are_fractions_in_half_open_unit_interval(param: str, value: float) -> None:
    """failure_rate and slow_call_rate outside (0, 1] are rejected, naming the parameter."""
    extra = {"slow_call_duration": 1.0} if param == "slow_call_rate" else {}
    with pytest.raises(ValueError, match=param):
        circuit_breaker(**{"failure_rate": 0.5, **extra, param: value})  # type: ignore[arg-type]
    circuit_breaker(**{"failure_rate": 0.5, **extra, param: 1.0})  # type: ignore[arg-type]


def test_rate_threshold_is_inclusive_over_last_window_calls(clock: FakeClock) -> None:
    """With window=2, rate 1.0: F, S, F stays closed (last two = S, F); one more F opens (>=)."""
    breaker = circuit_breaker(failure_rate=1.0, window=2, minimum_calls=2, clock=clock)
    for fn in (fail, lambda: None, fail):
        try:
            breaker.call(fn)
        except ConnectionError:
            pass
    assert breaker.state is CircuitState.CLOSED
    with pytest.raises(ConnectionError):
        breaker.call(fail)
    assert state_of(breaker) is CircuitState.OPEN


def test_ignored_half_open_probe_leaves_half_open(clock: FakeClock) -> None:
    """A half-open probe raising an `ignore`d exception leaves it HALF_OPEN and frees the permit."""
    breaker = circuit_breaker(failure_threshold=1, recovery_timeout=1.0, ignore=KeyError, clock=clock)
    with pytest.raises(ConnectionError):
        breaker.call(fail)
    clock.advance(1.0)
    with pytest.raises(KeyError):
        breaker.call(dict[str, int]().__getitem__, "x")
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.call(lambda: "ok") == "ok"
    assert state_of(breaker) is CircuitState.CLOSED


async def test_closed_breaker_never_serialises(clock: FakeClock) -> None:
    """Two calls can be inside a CLOSED breaker at the same time."""
    breaker, inside, both = circuit_breaker(clock=clock), [], asyncio.Event()

    async def body() -> None:
        inside.append(1)
        if len(inside) == 2:
            both.set()
        await both.wait()

    await asyncio.wait_for(asyncio.gather(breaker.call(body), breaker.call(body)), 1.0)


def test_subscribe_accepts_sync_and_async_handlers() -> None:
    """Sync handlers run inline; async handlers run as tasks the bus drains."""
    bus, got = EventBus(), []

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
