"""Tests of outcomes: ``Outcome``, ``outcome()`` and ``gather_outcomes()``, cancellation included."""

from __future__ import annotations

import asyncio
import gc
import inspect
import pickle
import traceback
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import pytest

from resilient import Outcome, TimeoutExceededError, gather_outcomes, outcome, timeout
from resilient.testing import FakeClock


class Boom(Exception):
    """An ordinary failure."""


async def value_of(v: object) -> object:
    """Return *v* after yielding once."""
    await asyncio.sleep(0)
    return v


async def raising(exc: BaseException) -> object:
    """Raise *exc* after yielding once."""
    await asyncio.sleep(0)
    raise exc


# --- Outcome ----------------------------------------------------------------------------


def test_a_value_outcome() -> None:
    """Outcome(v) is ok, holds v, has no exception, and unwraps to v."""
    o = Outcome([1, 2])
    assert (o.ok, o.value, o.exception, o.unwrap()) == (True, [1, 2], None, [1, 2])


def test_a_failed_outcome_unwraps_by_raising_the_same_exception() -> None:
    """Outcome(exception=e) is not ok, holds e, and unwrap() raises e itself."""
    error = Boom("x")
    o = Outcome(exception=error)
    assert (o.ok, o.value, o.exception) == (False, None, error)
    with pytest.raises(Boom) as info:
        o.unwrap()
    assert info.value is error


def test_none_is_a_value_too() -> None:
    """A success holding None is ok: .ok, not .value, tells success from failure."""
    assert (Outcome(None).ok, Outcome(None).unwrap()) == (True, None)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"value": 1, "exception": Boom()}, "not both"),
        ({"exception": KeyboardInterrupt()}, "never captured"),
        ({"exception": asyncio.CancelledError()}, "never captured"),
        ({"exception": "boom"}, "must be an Exception"),
    ],
)
def test_bad_outcomes_cannot_be_built(kwargs: dict[str, Any], message: str) -> None:
    """An outcome with both a value and an exception, or a non-Exception, is a TypeError."""
    with pytest.raises(TypeError, match=message):
        Outcome(**kwargs)


def test_outcomes_are_frozen_comparable_and_picklable() -> None:
    """Outcomes are immutable, equal by value (or by the same exception), hashable and picklable."""
    error = Boom("x")
    o = Outcome(3)
    with pytest.raises(AttributeError, match="frozen"):
        o.value = 4  # type: ignore[misc]
    with pytest.raises(AttributeError, match="frozen"):
        o._value = 4
    with pytest.raises(AttributeError, match="frozen"):
        del o._exception
    assert (o == Outcome(3), o == Outcome(4), Outcome(exception=error) == Outcome(exception=error)) == (
        True,
        False,
        True,
    )
    assert Outcome(exception=Boom("x")) != Outcome(exception=Boom("x"))
    assert len({Outcome(3), Outcome(3), Outcome(exception=error)}) == 2
    assert pickle.loads(pickle.dumps(o)) == o
    assert type(pickle.loads(pickle.dumps(Outcome(exception=error))).exception) is Boom
    assert (repr(o), repr(Outcome(exception=error))) == ("Outcome(3)", "Outcome(exception=Boom('x'))")


# --- outcome() ----------------------------------------------------------------------------


async def test_outcome_of_a_value() -> None:
    """outcome(aw) returns the value as an ok outcome."""
    assert await outcome(value_of(7)) == Outcome(7)


async def test_outcome_captures_an_exception_with_its_traceback() -> None:
    """An Exception becomes a failed outcome: the same object, its traceback intact for unwrap()."""
    error = Boom("x")
    got = await outcome(raising(error))
    assert got.exception is error
    with pytest.raises(Boom) as info:
        got.unwrap()
    assert "raising" in [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]


@pytest.mark.parametrize(
    "make",
    [
        asyncio.CancelledError,
        KeyboardInterrupt,
        SystemExit,
        lambda: BaseExceptionGroup("g", [Boom(), asyncio.CancelledError()]),
    ],
    ids=["cancelled", "keyboard-interrupt", "system-exit", "group-with-cancellation"],
)
async def test_outcome_never_captures_control_flow(make: Callable[[], BaseException]) -> None:
    """A control-flow exception raised by the awaitable propagates as the same object."""
    error = make()
    with pytest.raises(BaseException) as info:
        await outcome(raising(error))
    assert info.value is error


async def test_outcome_is_cancelled_with_its_caller() -> None:
    """Cancelling the task awaiting outcome() cancels the awaited work; nothing is captured."""
    started, stopped = asyncio.Event(), asyncio.Event()

    async def slow() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    task = asyncio.create_task(outcome(slow()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stopped.is_set()


async def test_a_cancellation_converted_to_an_exception_is_not_captured() -> None:
    """If the awaited code turns the caller's cancellation into an Exception, that exception propagates."""
    started = asyncio.Event()

    async def converts() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise Boom("was a cancellation") from None

    task = asyncio.create_task(outcome(converts()))
    await started.wait()
    task.cancel()
    with pytest.raises(Boom):
        await task


async def test_a_cancellation_swallowed_before_the_call_does_not_stop_capture() -> None:
    """A cancellation request swallowed earlier in the task leaves later failures captured as usual."""

    async def body() -> Outcome[object]:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            pass  # swallowed without uncancel(): cancelling() stays 1
        return await outcome(raising(Boom()))

    got = await asyncio.create_task(body())
    assert isinstance(got.exception, Boom)


async def test_outcome_accepts_tasks_and_futures() -> None:
    """Any awaitable works: a task, and a future resolved with an exception."""
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    future.set_exception(Boom())
    got = await outcome(asyncio.create_task(value_of("t")))
    failed = await outcome(future)
    assert (got, type(failed.exception)) == (Outcome("t"), Boom)


async def test_outcome_of_a_non_awaitable_is_a_type_error() -> None:
    """Passing something that is not awaitable raises TypeError (it is not captured)."""
    with pytest.raises(TypeError, match="awaitable"):
        await outcome(42)  # type: ignore[arg-type]


# --- gather_outcomes() ------------------------------------------------------------------


async def test_gather_returns_a_tuple_in_argument_order() -> None:
    """Outcomes come back in argument order whatever the completion order, as a tuple."""
    second_done = asyncio.Event()

    async def first() -> str:
        await second_done.wait()
        return "first"

    async def second() -> str:
        second_done.set()
        return "second"

    assert await gather_outcomes(first(), second()) == (Outcome("first"), Outcome("second"))


async def test_one_failure_never_cancels_the_others() -> None:
    """A child failing at once leaves a slower sibling running to its own result."""
    failed, error = asyncio.Event(), Boom()

    async def fails() -> None:
        failed.set()
        raise error

    async def slower() -> str:
        await failed.wait()
        await asyncio.sleep(0)
        return "done"

    assert await gather_outcomes(fails(), slower()) == (Outcome(exception=error), Outcome("done"))


async def test_one_timeout_never_sinks_the_others(clock: FakeClock) -> None:
    """A child whose timeout expires (virtual time) is a failed outcome; its sibling still answers."""

    @timeout(1.0, clock=clock)
    async def hangs() -> None:
        await asyncio.Event().wait()

    async def waits() -> str:
        await clock.sleep(2.0)  # moves virtual time past the other's timeout
        return "waited"

    hung, waited = await gather_outcomes(hangs(), waits())
    assert (type(hung.exception), waited) == (TimeoutExceededError, Outcome("waited"))


async def test_caller_cancellation_cancels_and_awaits_every_child() -> None:
    """Cancelling the caller cancels the children and waits for their cleanup: no task outlives the call."""
    running, cleaned = asyncio.Event(), []

    async def child(name: str) -> None:
        try:
            running.set()
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)  # cleanup that itself awaits
            await asyncio.sleep(0)
            cleaned.append(name)

    task = asyncio.create_task(gather_outcomes(child("a"), child("b"), value_of("c")))
    await running.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(cleaned) == ["a", "b"]
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_a_second_cancellation_during_cleanup_still_waits_for_children() -> None:
    """Cancelled again while children clean up, the caller still waits for every child before raising."""
    running, release, done = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def stubborn() -> None:
        try:
            running.set()
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await release.wait()  # slow cleanup
            done.set()
            raise

    task = asyncio.create_task(gather_outcomes(stubborn()))
    await running.wait()
    task.cancel()
    for _ in range(3):
        await asyncio.sleep(0)
    task.cancel()
    for _ in range(3):
        await asyncio.sleep(0)
    assert not task.done()  # still waiting for the child's cleanup
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert done.is_set()


async def test_caller_cancellation_wins_over_a_child_converting_it() -> None:
    """A child that turns its cancellation into an Exception does not turn the caller's into a result."""
    running = asyncio.Event()

    async def converts() -> None:
        running.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise Boom() from None

    task = asyncio.create_task(gather_outcomes(converts()))
    await running.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_child_raising_cancelled_error_is_not_captured() -> None:
    """A child's own CancelledError propagates (the same object), after the other children finished."""
    mine, finished = asyncio.CancelledError("child"), []

    async def other() -> str:
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        finished.append("other")
        return "other"

    with pytest.raises(asyncio.CancelledError) as info:
        await gather_outcomes(raising(mine), other())
    assert (info.value, finished) == (mine, ["other"])


async def test_tasks_and_futures_are_accepted() -> None:
    """Tasks and futures are awaited like coroutines."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str] = loop.create_future()
    loop.call_soon(future.set_result, "future")
    got = await gather_outcomes(asyncio.create_task(value_of("task")), future)
    assert got == (Outcome("task"), Outcome("future"))


async def test_no_awaitables_give_an_empty_tuple() -> None:
    """gather_outcomes() with no arguments returns () at once."""
    assert await gather_outcomes() == ()


async def test_a_non_awaitable_fails_before_anything_starts() -> None:
    """A non-awaitable argument raises TypeError naming its position; the coroutines given are closed."""
    ran: list[int] = []

    async def work() -> None:
        ran.append(1)

    first, last = work(), work()
    with pytest.raises(TypeError, match="argument 2 must be awaitable"):
        await gather_outcomes(first, 42, last)  # type: ignore[call-overload]
    await asyncio.sleep(0)
    assert (inspect.getcoroutinestate(first), inspect.getcoroutinestate(last), ran) == (
        inspect.CORO_CLOSED,
        inspect.CORO_CLOSED,
        [],
    )
    assert asyncio.all_tasks() == {asyncio.current_task()}


def test_keyboard_interrupt_in_a_child_stops_the_run(caplog: pytest.LogCaptureFixture) -> None:
    """A child's KeyboardInterrupt stops the loop; the sibling is cancelled; asyncio logs nothing later."""
    sibling: list[str] = []

    async def sibling_child() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            sibling.append("cancelled")
            raise

    async def main() -> None:
        await gather_outcomes(raising(KeyboardInterrupt()), sibling_child())

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(main())
    gc.collect()  # a task whose exception nobody retrieved would log "never retrieved" now
    assert (sibling, [r.getMessage() for r in caplog.records]) == (["cancelled"], [])


@pytest.mark.parametrize("run", [outcome, lambda aw: gather_outcomes(aw)], ids=["outcome", "gather"])
async def test_many_concurrent_failures_are_all_captured(run: Callable[[Awaitable[Any]], Any]) -> None:
    """Under concurrency, every failure is captured once, each with its own exception object."""
    errors = [Boom(i) for i in range(20)]
    got = await asyncio.gather(*(run(raising(e)) for e in errors))
    flat = [g[0] if isinstance(g, tuple) else g for g in got]
    assert [o.exception for o in flat] == errors


async def test_a_task_group_failure_is_captured_not_taken_for_a_cancellation() -> None:
    """A TaskGroup whose child fails after its body ended is captured (< 3.13 leaves a stale request)."""

    async def group() -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(raising(Boom()))

    got = await outcome(group())
    assert isinstance(got.exception, ExceptionGroup)
    later = await outcome(raising(Boom()))  # and the task is still usable afterwards
    assert isinstance(later.exception, Boom)


def test_an_outcome_is_never_equal_to_a_bare_value() -> None:
    """An Outcome compares only with outcomes: Outcome(1) is not 1."""
    assert (Outcome(1) == 1, Outcome(1) != 1) == (False, True)


def test_outcome_runs_outside_asyncio() -> None:
    """Driven by something other than asyncio (no running loop), outcome() still captures failures."""

    class Ready:
        def __init__(self, error: Exception | None) -> None:
            self.error = error

        def __await__(self) -> Generator[None, None, int]:
            if self.error is not None:
                raise self.error
            yield from ()  # a generator that never suspends
            return 5

    def drive(aw: Any) -> Any:
        coro = outcome(aw)
        with pytest.raises(StopIteration) as info:
            coro.send(None)
        return info.value.value

    error = Boom()
    assert (drive(Ready(None)), drive(Ready(error))) == (Outcome(5), Outcome(exception=error))
