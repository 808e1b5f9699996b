"""timeout: expiry, cancellation from outside, the caller's task, configuration."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import math
from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta
from typing import Any

import pytest

import resilient
from resilient import ResilientError, Timeout, TimeoutExceededError, timeout
from resilient.events import EventBus, TimeoutElapsed
from resilient.testing import FakeClock, capture_events

Body = Callable[[], Coroutine[Any, Any, Any]]
Form = Callable[[Timeout, Body], Awaitable[Any]]


async def as_decorator(t: Timeout, body: Body) -> Any:
    """Run *body* through ``t`` used as a decorator."""
    return await t(body)()


async def as_call(t: Timeout, body: Body) -> Any:
    """Run *body* through ``t.call``."""
    return await t.call(body)


async def as_context(t: Timeout, body: Body) -> Any:
    """Run *body* inside ``async with t:``."""
    async with t:
        return await body()


@pytest.fixture(params=[as_decorator, as_call, as_context], ids=["decorator", "call", "async-with"])
def run(request: pytest.FixtureRequest) -> Form:
    """Each way of applying a timeout."""
    form: Form = request.param
    return form


async def start(coro: Awaitable[Any]) -> asyncio.Task[Any]:
    """Start *coro* as a task and let it run up to its first real suspension."""
    task = asyncio.ensure_future(coro)
    for _ in range(3):
        await asyncio.sleep(0)
    return task


# --- expiry ---------------------------------------------------------------------


async def test_expiry_raises_timeout_exceeded(run: Form, clock: FakeClock) -> None:
    """A body that outlives the timeout raises TimeoutExceededError with .seconds."""
    with pytest.raises(TimeoutExceededError) as info:
        await run(timeout(2, clock=clock), functools.partial(clock.sleep, 5))
    assert info.value.seconds == 2.0


async def test_expiry_happens_at_the_deadline(run: Form, clock: FakeClock) -> None:
    """The body is cancelled exactly when the timeout's virtual time runs out."""
    with pytest.raises(TimeoutExceededError):
        await run(timeout(2, clock=clock), functools.partial(clock.sleep, 5))
    assert clock.monotonic() == 2.0


async def test_error_is_resilient_and_builtin_timeout(run: Form, clock: FakeClock) -> None:
    """The expiry error is both a ResilientError and a builtin TimeoutError."""
    with pytest.raises(TimeoutError) as info:
        await run(timeout(1, clock=clock), functools.partial(clock.sleep, 5))
    assert isinstance(info.value, ResilientError)


async def test_cause_is_cancelled_error(run: Form, clock: FakeClock) -> None:
    """The expiry error's __cause__ is the CancelledError that interrupted the body."""
    with pytest.raises(TimeoutExceededError) as info:
        await run(timeout(1, clock=clock), functools.partial(clock.sleep, 5))
    assert isinstance(info.value.__cause__, asyncio.CancelledError)


async def test_fresh_error_per_expiry(run: Form, clock: FakeClock) -> None:
    """Each expiry raises a new error object, so tracebacks never grow."""
    t = timeout(1, clock=clock)
    errors = []
    for _ in range(2):
        with pytest.raises(TimeoutExceededError) as info:
            await run(t, functools.partial(clock.sleep, 5))
        errors.append(info.value)
    assert errors[0] is not errors[1]


async def test_cancelling_restored_after_caught_timeout(run: Form, clock: FakeClock) -> None:
    """After a caught TimeoutExceededError the task's cancelling() is what it was before."""
    task = asyncio.current_task()
    assert task is not None
    before = task.cancelling()
    with pytest.raises(TimeoutExceededError):
        await run(timeout(1, clock=clock), functools.partial(clock.sleep, 5))
    assert task.cancelling() == before


async def test_task_continues_normally_after_caught_timeout(run: Form, clock: FakeClock) -> None:
    """After a caught timeout the task can await again without a stray cancellation."""
    with pytest.raises(TimeoutExceededError):
        await run(timeout(1, clock=clock), functools.partial(clock.sleep, 5))
    await asyncio.sleep(0)
    assert await asyncio.wait_for(asyncio.sleep(0, result="ok"), 10) == "ok"


async def test_value_returned_in_time(run: Form, clock: FakeClock) -> None:
    """A body that finishes in time returns its value."""

    async def body() -> str:
        await clock.sleep(0.5)
        return "done"

    assert await run(timeout(1, clock=clock), body) == "done"


async def test_timer_cancelled_after_success(run: Form, clock: FakeClock) -> None:
    """A finished call leaves no timer behind to cancel the task later."""

    async def body() -> None:
        await clock.sleep(0.5)

    await run(timeout(1, clock=clock), body)
    clock.advance(10)
    await asyncio.sleep(0)
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


async def test_body_swallowing_cancellation_returns_value(run: Form, clock: FakeClock) -> None:
    """A body that swallows the timeout's cancellation and returns has its value returned."""

    async def body() -> str:
        try:
            await clock.sleep(5)
        except asyncio.CancelledError:
            return "swallowed"
        return "slept"

    t = timeout(1, clock=clock)
    task = asyncio.current_task()
    assert task is not None
    assert (await run(t, body), task.cancelling()) == ("swallowed", 0)


async def test_body_raising_other_error_on_cancel(run: Form, clock: FakeClock) -> None:
    """A body that turns the cancellation into its own error propagates that error unchanged."""

    class Cleanup(Exception):
        pass

    async def body() -> None:
        try:
            await clock.sleep(5)
        except asyncio.CancelledError:
            raise Cleanup from None

    with pytest.raises(Cleanup):
        await run(timeout(1, clock=clock), body)


async def test_body_error_propagates_same_object(run: Form, clock: FakeClock) -> None:
    """An exception raised by the body before expiry propagates as the same object."""
    boom = ValueError("boom")

    async def body() -> None:
        raise boom

    with pytest.raises(ValueError) as info:
        await run(timeout(1, clock=clock), body)
    assert info.value is boom


async def test_timedelta_accepted(run: Form, clock: FakeClock) -> None:
    """A timedelta is a valid duration and expires at its length."""
    t = timeout(timedelta(milliseconds=1500), clock=clock)
    with pytest.raises(TimeoutExceededError) as info:
        await run(t, functools.partial(clock.sleep, 5))
    assert (t.seconds, info.value.seconds, clock.monotonic()) == (1.5, 1.5, 1.5)


# --- cancellation from outside ------------------------------------------------------


async def test_outer_cancel_is_not_a_timeout(run: Form, clock: FakeClock) -> None:
    """A cancellation from outside before expiry propagates as CancelledError."""
    task = await start(run(timeout(5, clock=clock), asyncio.Event().wait))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_outer_cancel_right_after_expiry(run: Form, clock: FakeClock) -> None:
    """A cancellation landing after the timer fired but before the task ran is not a timeout."""
    task = await start(run(timeout(1, clock=clock), asyncio.Event().wait))
    clock.advance(1)  # the timer fires and cancels the task...
    task.cancel()  # ...and the outside cancels it too before it runs.
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_outer_cancel_right_before_expiry(run: Form, clock: FakeClock) -> None:
    """A cancellation that lands first, with the timer firing before the task runs, is not a timeout."""
    task = await start(run(timeout(1, clock=clock), asyncio.Event().wait))
    task.cancel()
    clock.advance(1)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_outer_cancel_after_expiry_with_swallowing_body(run: Form, clock: FakeClock) -> None:
    """Expiry plus an outer cancel on a body that swallows once still ends cancelled, not timed out."""

    async def body() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            pass
        await asyncio.Event().wait()

    task = await start(run(timeout(1, clock=clock), body))
    clock.advance(1)
    await asyncio.sleep(0)  # the body swallows the expiry's cancellation
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_outer_cancel_while_timer_pending_cancels_timer(run: Form, clock: FakeClock) -> None:
    """After an outer cancellation the timer is gone: advancing the clock later touches nothing."""
    t = timeout(1, clock=clock)
    task = await start(run(t, asyncio.Event().wait))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    clock.advance(5)
    assert task.cancelled()


async def test_timeout_inside_wait_for_of_outer_cancel(clock: FakeClock) -> None:
    """asyncio.wait_for cancelling a timeout-guarded call sees its own TimeoutError, not ours."""
    t = timeout(100, clock=clock)

    @t
    async def body() -> None:
        await asyncio.Event().wait()

    with pytest.raises(TimeoutError) as info:
        await asyncio.wait_for(body(), 0)
    assert not isinstance(info.value, TimeoutExceededError)


async def test_cancel_counts_balanced_after_outer_cancel(clock: FakeClock) -> None:
    """Expiry plus an outer cancel leaves cancelling() at one (the outer request) when caught."""
    t = timeout(1, clock=clock)

    async def guarded() -> int:
        try:
            async with t:
                await asyncio.Event().wait()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            assert task is not None
            return task.cancelling()
        return -1

    task = await start(guarded())
    clock.advance(1)
    task.cancel()
    assert await task == 1  # the timer's request is undone; the outer one remains


# --- the caller's task ----------------------------------------------------------------

marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")


async def test_body_runs_in_callers_task(run: Form, clock: FakeClock) -> None:
    """The body runs in the calling task, not a new one."""
    caller = asyncio.current_task()

    async def body() -> asyncio.Task[Any] | None:
        return asyncio.current_task()

    assert await run(timeout(1, clock=clock), body) is caller


async def test_context_variable_visible_after_return(run: Form, clock: FakeClock) -> None:
    """A context variable set inside the body is visible to the caller afterwards."""

    async def body() -> None:
        marker.set("set inside")

    marker.set("unset")
    await run(timeout(1, clock=clock), body)
    assert marker.get() == "set inside"


# --- async with -------------------------------------------------------------------------


async def test_shared_timeout_entered_concurrently(clock: FakeClock) -> None:
    """Many tasks inside one Timeout object at once all expire, each with its own fresh error."""
    t = timeout(3, clock=clock)

    async def worker() -> TimeoutExceededError | None:
        try:
            async with t:
                await asyncio.Event().wait()
        except TimeoutExceededError as exc:
            return exc
        return None

    tasks = [await start(worker()) for _ in range(10)]
    clock.advance(3)
    errors = await asyncio.gather(*tasks)
    assert len({id(e) for e in errors if e is not None}) == 10


async def test_shared_timeout_all_finish_in_time(clock: FakeClock) -> None:
    """Many tasks inside one Timeout object that finish in time all return normally."""
    t = timeout(3, clock=clock)
    gate = asyncio.Event()

    async def worker(i: int) -> int:
        async with t:
            await gate.wait()
        return i

    tasks = [await start(worker(i)) for i in range(10)]
    clock.advance(2)
    gate.set()
    assert await asyncio.gather(*tasks) == list(range(10))
    clock.advance(5)  # no timer of any entry is left to fire
    await asyncio.sleep(0)


async def test_shared_timeout_each_task_own_deadline(clock: FakeClock) -> None:
    """Tasks entering one Timeout at different times each get a deadline from their own entry."""
    t = timeout(2, clock=clock)
    seen: list[float | None] = []
    gate = asyncio.Event()

    async def worker() -> None:
        async with t:
            seen.append(resilient.remaining())
            await gate.wait()

    first = await start(worker())
    clock.advance(1)
    second = await start(worker())
    gate.set()
    await asyncio.gather(first, second)
    assert seen == [2.0, 2.0]


async def test_shared_timeout_one_expiry_leaves_others(clock: FakeClock) -> None:
    """When one task's entry expires, another task inside the same Timeout keeps running."""
    t = timeout(2, clock=clock)
    gate = asyncio.Event()

    async def worker() -> str:
        try:
            async with t:
                await gate.wait()
        except TimeoutExceededError:
            return "timeout"
        return "ok"

    first = await start(worker())
    clock.advance(1)
    second = await start(worker())
    clock.advance(1)  # the first entry expires, the second has 1s left
    await asyncio.sleep(0)
    gate.set()
    assert list(await asyncio.gather(first, second)) == ["timeout", "ok"]


async def test_same_timeout_nested_in_one_task(clock: FakeClock) -> None:
    """One Timeout object nested in itself in one task: the outer entry fires and reports."""
    t = timeout(2, clock=clock)

    async def body() -> None:
        await clock.sleep(1)
        async with t:
            await clock.sleep(5)

    with pytest.raises(TimeoutExceededError):
        await as_context(t, body)
    assert clock.monotonic() == 2.0


async def test_same_timeout_nested_inner_exits_cleanly(clock: FakeClock) -> None:
    """A nested entry of the same Timeout exits and leaves the outer entry working."""
    t = timeout(2, clock=clock)
    async with t:
        async with t:
            await clock.sleep(0.5)
        assert resilient.remaining() == 1.5
    assert resilient.remaining() is None


async def test_async_with_returns_the_timeout(clock: FakeClock) -> None:
    """`async with timeout(...) as t` binds the Timeout itself."""
    t = timeout(1, clock=clock)
    async with t as entered:
        assert entered is t


def test_async_with_outside_task_raises() -> None:
    """Entering a timeout outside a running task raises RuntimeError."""
    coro = timeout(1).__aenter__()
    with pytest.raises(RuntimeError):
        coro.send(None)
    coro.close()


async def test_context_manager_cancellation_not_converted(clock: FakeClock) -> None:
    """`async with` cancelled from outside propagates CancelledError and restores the scope stack."""
    t = timeout(5, clock=clock)

    async def body() -> None:
        async with t:
            await asyncio.Event().wait()

    task = await start(body())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with t:  # the object is still usable in this task
        pass


# --- control flow ----------------------------------------------------------------------


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit, GeneratorExit])
async def test_control_flow_exception_propagates(
    run: Form, clock: FakeClock, exc_type: type[BaseException]
) -> None:
    """A control-flow exception from the body propagates as the same object."""
    exc = exc_type()

    async def body() -> None:
        raise exc

    with pytest.raises(exc_type) as info:
        await run(timeout(1, clock=clock), body)
    assert info.value is exc


async def test_control_flow_after_expiry_not_converted(run: Form, clock: FakeClock) -> None:
    """A KeyboardInterrupt raised while handling the expiry propagates instead of a timeout."""

    async def body() -> None:
        try:
            await clock.sleep(5)
        except asyncio.CancelledError:
            raise KeyboardInterrupt from None

    with pytest.raises(KeyboardInterrupt):
        await run(timeout(1, clock=clock), body)


# --- configuration -----------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [0, -1, -0.5, math.nan, math.inf, -math.inf, timedelta(0), timedelta(-1)])
def test_bad_seconds_value(seconds: Any) -> None:
    """Non-positive, NaN or infinite seconds raise ValueError naming `seconds`."""
    with pytest.raises(ValueError, match="seconds"):
        timeout(seconds)


@pytest.mark.parametrize("seconds", ["1", None, True, [1], object()], ids=repr)
def test_bad_seconds_type(seconds: Any) -> None:
    """A non-number for seconds raises TypeError naming `seconds`."""
    with pytest.raises(TypeError, match="seconds"):
        timeout(seconds)


@pytest.mark.parametrize(
    ("kwarg", "value", "error"),
    [
        ("name", 3, TypeError),
        ("name", "", ValueError),
        ("clock", object(), TypeError),
        ("bus", object(), TypeError),
    ],
)
def test_bad_keyword(kwarg: str, value: object, error: type[Exception]) -> None:
    """A bad name, clock or bus raises at factory time, naming the parameter."""
    with pytest.raises(error, match=kwarg):
        timeout(1, **{kwarg: value})  # type: ignore[arg-type]


def test_only_seconds_is_positional() -> None:
    """Configuration after seconds is keyword-only."""
    with pytest.raises(TypeError):
        timeout(1, "name")  # type: ignore[call-arg]


def test_int_seconds_stored_as_float() -> None:
    """An int number of seconds is stored as float seconds."""
    t = timeout(3)
    assert (t.seconds, type(t.seconds)) == (3.0, float)


# --- events -----------------------------------------------------------------------------


async def test_timeout_elapsed_event(clock: FakeClock) -> None:
    """An expiry emits one TimeoutElapsed with seconds, name, operation and time."""
    bus = EventBus()
    t = timeout(2, name="db", clock=clock, bus=bus)

    @t
    async def query() -> None:
        await clock.sleep(5)

    with capture_events(TimeoutElapsed, bus=bus) as events, pytest.raises(TimeoutExceededError):
        await query()
    assert events == [
        TimeoutElapsed(policy="timeout", name="db", operation=query.__qualname__, time=2.0, seconds=2.0)
    ]


async def test_timeout_elapsed_context_manager_operation_none(clock: FakeClock) -> None:
    """The `async with` form emits TimeoutElapsed with operation None on the default bus."""
    with capture_events(TimeoutElapsed) as events, pytest.raises(TimeoutExceededError):
        async with timeout(1, clock=clock):
            await clock.sleep(5)
    assert [(e.operation, e.seconds) for e in events] == [(None, 1.0)]  # type: ignore[attr-defined]


async def test_no_event_on_outer_cancel(clock: FakeClock) -> None:
    """A cancellation from outside after expiry emits no TimeoutElapsed."""
    with capture_events(TimeoutElapsed) as events:
        task = await start(as_decorator(timeout(1, clock=clock), asyncio.Event().wait))
        clock.advance(1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert events == []


async def test_no_event_in_time(clock: FakeClock) -> None:
    """A call that finishes in time emits no TimeoutElapsed."""
    with capture_events(TimeoutElapsed) as events:
        await timeout(1, clock=clock).call(clock.sleep, 0.5)
    assert events == []


def test_repr() -> None:
    """The repr shows the factory call."""
    assert repr(timeout(1.5)) == "timeout(1.5)"


# --- a timer that fires inside the task itself ----------------------------------------


async def test_expiry_fired_by_body_without_await_leaves_no_stray_cancel(clock: FakeClock) -> None:
    """A body that advances the clock past expiry and returns without awaiting leaves no stray cancel."""
    async with timeout(1, clock=clock):
        clock.advance(2)
    await asyncio.sleep(0)  # would raise CancelledError if a cancel request were left behind
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


async def test_expiry_fired_by_body_interrupts_next_await(clock: FakeClock) -> None:
    """A body that advances the clock past expiry is cancelled at its next await and times out."""
    reached: list[str] = []

    async def body() -> None:
        clock.advance(2)
        await asyncio.sleep(0)
        reached.append("after await")

    with pytest.raises(TimeoutExceededError):
        await as_context(timeout(1, clock=clock), body)
    assert reached == []


async def test_blocking_sleep_on_shared_clock_inside_timeout(clock: FakeClock) -> None:
    """Sync code blocking past the deadline on the shared clock is stopped at the body's next await."""
    steps: list[str] = []

    @timeout(1.5, clock=clock)
    async def guarded() -> None:
        clock.sleep_blocking(2)  # sync code cannot be interrupted...
        steps.append("sync done")
        await asyncio.sleep(0)  # ...but the next await is
        steps.append("after await")

    with pytest.raises(TimeoutExceededError):
        await guarded()
    assert steps == ["sync done"]


async def test_retry_respects_deadline_of_enclosing_timeout(clock: FakeClock) -> None:
    """A retry inside a timeout gives up instead of starting a wait that ends past the deadline."""
    calls = 0

    @resilient.retry(attempts=5, backoff=1, clock=clock)
    def flaky() -> int:
        nonlocal calls
        calls += 1
        raise ValueError(calls)

    @timeout(1.5, clock=clock)
    async def guarded() -> int:
        return flaky()

    with pytest.raises(ValueError, match="2"):
        await guarded()
    assert clock.monotonic() == 1.0


# --- interplay with asyncio's own cancellation scopes -------------------------------------


async def test_asyncio_timeout_inside_expires_first(clock: FakeClock) -> None:
    """An asyncio.timeout inside ours that expires first raises its own TimeoutError, not ours."""

    async def body() -> str:
        try:
            async with asyncio.timeout(0):
                await asyncio.Event().wait()
        except TimeoutError as exc:
            return type(exc).__name__
        return "no timeout"

    assert await timeout(5, clock=clock).call(body) == "TimeoutError"


async def test_our_timeout_inside_asyncio_timeout(clock: FakeClock) -> None:
    """Our expiry inside a longer asyncio.timeout raises TimeoutExceededError through it."""

    async def body() -> None:
        async with asyncio.timeout(3600):
            await timeout(1, clock=clock).call(clock.sleep, 5)

    with pytest.raises(TimeoutExceededError):
        await body()


async def test_task_group_inside_timeout(clock: FakeClock) -> None:
    """Expiry while a TaskGroup runs cancels its children and raises TimeoutExceededError."""
    cancelled: list[int] = []

    async def child(i: int) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(i)
            raise

    async def body() -> None:
        async with asyncio.TaskGroup() as tg:
            for i in range(3):
                tg.create_task(child(i))
            await clock.sleep(5)

    with pytest.raises(TimeoutExceededError):
        await timeout(1, clock=clock).call(body)
    assert sorted(cancelled) == [0, 1, 2]


async def test_gathered_children_with_longer_timeouts_report_outer(clock: FakeClock) -> None:
    """Children guarded by longer timeouts, gathered under a shorter one, end with the OUTER error."""
    inner = timeout(10, clock=clock)

    @inner
    async def child() -> None:
        await asyncio.Event().wait()

    @timeout(2, clock=clock)
    async def parent() -> None:
        await asyncio.gather(child(), child())

    task = await start(parent())
    clock.advance(2)
    with pytest.raises(TimeoutExceededError) as info:
        await task
    assert info.value.seconds == 2.0


async def test_expiry_fired_from_another_thread(clock: FakeClock) -> None:
    """A fake clock advanced from a worker thread expires the timeout safely on the loop's thread."""
    task = await start(as_decorator(timeout(1, clock=clock), asyncio.Event().wait))
    await asyncio.to_thread(clock.advance, 1)
    with pytest.raises(TimeoutExceededError):
        await task


async def test_expired_entry_closed_before_deferred_cancel_runs(clock: FakeClock) -> None:
    """An expiry deferred to the loop does nothing if the body has already left the timeout."""
    t = timeout(1, clock=clock)

    async def body() -> str:
        clock.advance(1)  # fires inside the task: the cancel is deferred...
        return "done"  # ...and withdrawn because the body returns first

    assert await as_context(t, body) == "done"
    for _ in range(3):
        await asyncio.sleep(0)
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


# --- the system clock and clocks without timers ------------------------------------------


class TimerlessClock:
    """A clock with only monotonic() and sleep(): timeouts fall back to the loop's timer."""

    def monotonic(self) -> float:
        return 0.0

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)


@pytest.mark.parametrize("clock_factory", [lambda: None, TimerlessClock], ids=["system", "timerless"])
async def test_loop_timer_path(clock_factory: Callable[[], Any]) -> None:
    """On the loop's own timer a call that finishes in time returns, and its timer never fires later."""
    t = timeout(3600, clock=clock_factory())

    async def body() -> str:
        await asyncio.sleep(0)
        return "quick"

    assert await t.call(body) == "quick"
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


async def test_system_clock_remaining_inside() -> None:
    """With the system clock, remaining() inside a long timeout is close to its length."""
    async with timeout(3600):
        left = resilient.remaining()
    assert left is not None
    assert 3500 < left <= 3600


def test_enter_outside_a_task_raises() -> None:
    """Entering a timeout from a loop callback (no current task) raises RuntimeError."""
    errors: list[BaseException] = []

    def callback() -> None:
        coro = timeout(1).__aenter__()
        try:
            coro.send(None)
        except RuntimeError as exc:
            errors.append(exc)
        finally:
            coro.close()

    async def main() -> None:
        asyncio.get_running_loop().call_soon(callback)
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    asyncio.run(main())
    assert "task" in str(errors[0])


async def test_exit_without_entry_raises(clock: FakeClock) -> None:
    """Leaving a timeout that this task never entered raises RuntimeError."""
    with pytest.raises(RuntimeError, match="without a matching entry"):
        await timeout(1, clock=clock).__aexit__(None, None, None)


def test_wrap_sync_always_raises() -> None:
    """A timeout has no sync layer."""
    with pytest.raises(TypeError, match="sync"):
        timeout(1).wrap_sync(lambda ctx, fn, args, kwargs: None)
