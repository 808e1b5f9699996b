"""hedge: when attempts start, which outcome wins, contexts, budget, deadlines, configuration."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import math
import sys
import threading
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

import resilient
from resilient import (
    CallContext,
    CircuitOpenError,
    Hedge,
    RetryBudget,
    circuit_breaker,
    current_call,
    hedge,
    pipeline,
    pipeline_of,
    retry,
    timeout,
)
from resilient.events import EventBus, HedgeStarted
from resilient.testing import FakeClock, capture_events


class Dependency:
    """An async function whose every attempt waits until the test answers it.

    Attempt numbers come from ``current_call().attempt``, so every test also
    checks that each attempt sees its own number.
    """

    def __init__(self) -> None:
        self.futures: dict[int, asyncio.Future[Any]] = {}
        self.started: list[int] = []
        self.cancelled: list[int] = []
        self.finished: list[int] = []
        self.contexts: dict[int, CallContext] = {}
        self.tasks: dict[int, asyncio.Task[Any] | None] = {}

    def future(self, n: int) -> asyncio.Future[Any]:
        """The future attempt *n* waits for."""
        fut = self.futures.get(n)
        if fut is None:
            fut = self.futures[n] = asyncio.get_running_loop().create_future()
        return fut

    async def __call__(self) -> Any:
        ctx = current_call()
        assert ctx is not None
        n = ctx.attempt
        self.started.append(n)
        self.contexts[n] = ctx
        self.tasks[n] = asyncio.current_task()
        try:
            return await self.future(n)
        except asyncio.CancelledError:
            self.cancelled.append(n)
            raise
        finally:
            self.finished.append(n)

    def answer(self, n: int, value: Any) -> None:
        """Make attempt *n* return *value*."""
        self.future(n).set_result(value)

    def fail(self, n: int, exc: BaseException) -> None:
        """Make attempt *n* raise *exc*."""
        self.future(n).set_exception(exc)


async def settle(rounds: int = 10) -> None:
    """Let every ready task run for a few loop iterations."""
    for _ in range(rounds):
        await asyncio.sleep(0)


def others() -> set[asyncio.Task[Any]]:
    """The tasks of the running loop other than the current one."""
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


@pytest.fixture
def dep() -> Dependency:
    """A dependency the test answers attempt by attempt."""
    return Dependency()


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """What reaches the running loop's exception handler (e.g. "Task exception was never retrieved")."""
    seen: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    yield seen
    loop.set_exception_handler(previous)


async def start(h: Hedge, fn: Any) -> asyncio.Task[Any]:
    """Start a hedged call of *fn* as a task and let its first attempt begin."""
    task = asyncio.ensure_future(h.call(fn))
    await settle()
    return task


# --- when attempts start ------------------------------------------------------------


async def test_answer_within_the_delay_starts_no_hedge(dep: Dependency, clock: FakeClock) -> None:
    """A first attempt answering before the delay is the only attempt, and no event is emitted."""
    with capture_events() as events:
        task = await start(hedge(delay=1, clock=clock), dep)
        dep.answer(1, "one")
        assert await task == "one"
    assert dep.started == [1]
    assert [e for e in events if isinstance(e, HedgeStarted)] == []


async def test_elapsed_delay_starts_the_next_attempt(dep: Dependency, clock: FakeClock) -> None:
    """With no answer after the delay, attempt 2 starts and HedgeStarted says why."""
    with capture_events() as events:
        task = await start(hedge(delay=1, clock=clock), dep)
        clock.advance(0.999)
        await settle()
        assert dep.started == [1]
        clock.advance(0.001)
        await settle()
        assert dep.started == [1, 2]
        dep.answer(2, "two")
        await task
    [started] = [e for e in events if isinstance(e, HedgeStarted)]
    assert (started.attempt, started.reason, started.policy, started.time) == (2, "delay", "hedge", 1.0)


async def test_delay_runs_from_the_call_even_if_the_clock_moves_at_once(
    dep: Dependency, clock: FakeClock
) -> None:
    """Time that passes right after the call starts (before any attempt ran) counts toward the delay."""
    task = asyncio.ensure_future(hedge(delay=1, clock=clock).call(dep))
    await asyncio.sleep(0)  # the call has started; its first attempt has not run yet
    clock.advance(1)
    await settle()
    assert dep.started == [1, 2]
    dep.answer(2, "two")
    assert await task == "two"


async def test_each_start_rearms_the_delay(dep: Dependency, clock: FakeClock) -> None:
    """Attempt 3 starts one delay after attempt 2, and no attempt starts beyond `attempts`."""
    task = await start(hedge(attempts=3, delay=1, clock=clock), dep)
    for expected in ([1, 2], [1, 2, 3], [1, 2, 3]):
        clock.advance(1)
        await settle()
        assert dep.started == expected
    dep.answer(3, "three")
    assert await task == "three"


async def test_delay_zero_starts_every_attempt_at_once(dep: Dependency, clock: FakeClock) -> None:
    """delay=0 starts all attempts before any time passes."""
    task = await start(hedge(attempts=3, delay=0, clock=clock), dep)
    assert sorted(dep.started) == [1, 2, 3]
    dep.answer(2, "two")
    assert await task == "two"


async def test_delay_none_hedges_only_failures(dep: Dependency, clock: FakeClock) -> None:
    """delay=None never hedges on time; a handled failure starts the next attempt at once."""
    with capture_events() as events:
        task = await start(hedge(delay=None, clock=clock), dep)
        clock.advance(3600)
        await settle()
        assert dep.started == [1]
        dep.fail(1, ConnectionError("refused"))
        await settle()
        assert dep.started == [1, 2]
        dep.answer(2, "two")
        assert await task == "two"
    assert [(e.attempt, e.reason) for e in events if isinstance(e, HedgeStarted)] == [(2, "failure")]


async def test_handled_failure_starts_the_next_attempt_at_once(dep: Dependency, clock: FakeClock) -> None:
    """A handled failure starts the next attempt at once and restarts the delay for the one after."""
    task = await start(hedge(attempts=3, delay=5, clock=clock), dep)
    clock.advance(4)
    dep.fail(1, ConnectionError("refused"))
    await settle()
    assert dep.started == [1, 2]
    clock.advance(4.5)
    await settle()
    assert dep.started == [1, 2]
    clock.advance(0.5)
    await settle()
    assert dep.started == [1, 2, 3]
    dep.answer(3, "three")
    await task


async def test_one_attempt_never_hedges(dep: Dependency, clock: FakeClock) -> None:
    """attempts=1 runs the call once, in a task of its own, whatever the delay."""
    task = await start(hedge(attempts=1, delay=0, clock=clock), dep)
    clock.advance(10)
    await settle()
    dep.fail(1, ConnectionError("refused"))
    with pytest.raises(ConnectionError):
        await task
    assert dep.started == [1]


# --- which outcome wins ---------------------------------------------------------------


async def test_first_result_wins_and_losers_are_cancelled_and_awaited(
    dep: Dependency, clock: FakeClock
) -> None:
    """The first result is returned; the other attempts were cancelled and finished before the return."""
    task = await start(hedge(attempts=3, delay=0, clock=clock), dep)
    dep.answer(2, "two")
    assert await task == "two"
    assert sorted(dep.cancelled) == [1, 3]
    assert sorted(dep.finished) == [1, 2, 3]
    assert others() == set()


async def test_unhandled_exception_ends_the_call(dep: Dependency, clock: FakeClock) -> None:
    """An exception `on` does not match is raised as the same object, and the other attempts are cancelled."""
    task = await start(hedge(delay=0, on=ConnectionError, clock=clock), dep)
    boom = ValueError("bug")
    dep.fail(1, boom)
    with pytest.raises(ValueError) as info:
        await task
    assert info.value is boom
    assert dep.cancelled == [2]


async def test_when_every_attempt_fails_the_last_to_finish_propagates(
    dep: Dependency, clock: FakeClock
) -> None:
    """All attempts failing raises the exception of the last one to finish, as the same object."""
    task = await start(hedge(attempts=3, delay=0, clock=clock), dep)
    last = ConnectionError("third to finish")
    dep.fail(3, ConnectionError("first to finish"))
    await settle()
    dep.fail(1, ConnectionError("second to finish"))
    await settle()
    dep.fail(2, last)
    with pytest.raises(ConnectionError) as info:
        await task
    assert info.value is last


async def test_rejected_results_start_the_next_attempt(dep: Dependency, clock: FakeClock) -> None:
    """A result matching on_result is a failure: the next attempt starts and a good result wins."""
    task = await start(hedge(delay=None, on_result=lambda r: r is None, clock=clock), dep)
    dep.answer(1, None)
    await settle()
    assert dep.started == [1, 2]
    dep.answer(2, "two")
    assert await task == "two"


async def test_all_results_rejected_returns_the_last(dep: Dependency, clock: FakeClock) -> None:
    """When every result is rejected, the last one to finish is returned."""
    task = await start(hedge(delay=0, on_result=lambda r: r < 10, clock=clock), dep)
    dep.answer(2, 2)
    await settle()
    dep.answer(1, 1)
    assert await task == 1


async def test_on_result_raising_propagates_and_cancels_the_rest(dep: Dependency, clock: FakeClock) -> None:
    """A predicate that raises ends the call with its error; the other attempts are cancelled and awaited."""
    bad = RuntimeError("predicate bug")

    def predicate(result: object) -> bool:
        raise bad

    task = await start(hedge(delay=0, on_result=predicate, clock=clock), dep)
    dep.answer(1, "one")
    with pytest.raises(RuntimeError) as info:
        await task
    assert info.value is bad
    assert dep.cancelled == [2]
    assert others() == set()


async def test_loser_errors_never_surface(clock: FakeClock, loop_errors: list[dict[str, Any]]) -> None:
    """A loser that fails while being cancelled changes nothing and reaches no exception handler."""
    gate = asyncio.Event()

    @hedge(delay=0, clock=clock)
    async def op() -> str:
        ctx = current_call()
        assert ctx is not None
        if ctx.attempt == 1:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                raise RuntimeError("cleanup failed") from None
        await gate.wait()
        return "two"

    task = asyncio.ensure_future(op())
    await settle()
    gate.set()
    assert await task == "two"
    del task, op
    gc.collect()  # an unretrieved task exception is reported when the task is collected
    await settle()
    assert loop_errors == []


async def test_a_loser_that_swallows_cancellation_is_waited_for(clock: FakeClock) -> None:
    """A loser that ignores its cancellation holds the call until it ends; its result is dropped."""
    release = asyncio.Event()

    @hedge(delay=0, clock=clock)
    async def op() -> str:
        ctx = current_call()
        assert ctx is not None
        if ctx.attempt == 2:
            return "fast"
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await release.wait()  # swallowed: keeps running
        return "slow"

    task = asyncio.ensure_future(op())
    await settle()
    assert not task.done()
    release.set()
    assert await task == "fast"


# --- attempts: tasks, contexts, numbers --------------------------------------------------


async def test_each_attempt_sees_its_own_number_and_context(dep: Dependency, clock: FakeClock) -> None:
    """current_call() in each attempt has that attempt's number, in a context of its own."""
    task = await start(hedge(attempts=3, delay=0, clock=clock), dep)
    dep.answer(1, "one")
    await task
    assert {n: ctx.attempt for n, ctx in dep.contexts.items()} == {1: 1, 2: 2, 3: 3}
    assert len({id(ctx) for ctx in dep.contexts.values()}) == 3
    assert {ctx.operation for ctx in dep.contexts.values()} == {Dependency.__qualname__}


async def test_each_attempt_is_a_task_of_its_own(dep: Dependency, clock: FakeClock) -> None:
    """Every attempt runs in its own task, none of them the caller's."""
    task = await start(hedge(delay=0, clock=clock), dep)
    dep.answer(1, "one")
    await task
    tasks = list(dep.tasks.values())
    assert len(set(map(id, tasks))) == 2
    assert task not in tasks


async def test_attempts_run_with_a_copy_of_the_callers_context(clock: FakeClock) -> None:
    """Attempts see the caller's context variables; what they set stays in their own copy."""
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var")
    seen: list[str] = []

    @hedge(delay=0, clock=clock)
    async def op() -> None:
        seen.append(var.get())
        var.set("inside")

    var.set("caller")
    await op()
    assert (seen, var.get()) == (["caller", "caller"], "caller")


async def test_retry_inside_each_attempt_counts_from_the_attempt(clock: FakeClock) -> None:
    """A retry inside the hedge numbers its attempts in each hedged attempt's own context."""
    seen: list[tuple[str, int]] = []

    @hedge(delay=0, clock=clock)
    @retry(attempts=2, backoff=0, clock=clock)
    async def op() -> int:
        ctx = current_call()
        assert ctx is not None
        seen.append(("call", ctx.attempt))
        if len(seen) <= 2:
            raise ConnectionError("first try of each hedged attempt")
        await asyncio.sleep(0)
        return ctx.attempt

    assert await op() == 2
    assert seen[:2] == [("call", 1), ("call", 2)]


async def test_hedge_inside_retry_gives_each_try_fresh_attempt_numbers(clock: FakeClock) -> None:
    """Under an outer retry, each hedged call numbers its attempts from 1 again."""
    seen: list[int] = []

    @retry(attempts=2, backoff=0, clock=clock)
    @hedge(attempts=1, clock=clock)
    async def op() -> None:
        ctx = current_call()
        assert ctx is not None
        seen.append(ctx.attempt)
        if len(seen) == 1:
            raise ConnectionError("first")

    await op()
    assert seen == [1, 1]


# --- rejections, budget, deadline ---------------------------------------------------------


async def test_a_rejection_is_hedged_only_when_on_matches(clock: FakeClock) -> None:
    """An inner breaker's CircuitOpenError starts the next attempt only if `on` matches it."""
    breaker = circuit_breaker(failure_threshold=1, clock=clock)
    breaker.isolate()
    calls: list[int] = []

    async def op() -> None:
        calls.append(1)

    with capture_events() as events:
        with pytest.raises(CircuitOpenError):
            await pipeline(hedge(delay=None, on=ConnectionError, clock=clock), breaker).call(op)
        assert [e for e in events if isinstance(e, HedgeStarted)] == []
        with pytest.raises(CircuitOpenError):
            await pipeline(hedge(delay=None, clock=clock), breaker).call(op)
        assert [e.reason for e in events if isinstance(e, HedgeStarted)] == ["failure"]
    assert calls == []


async def test_no_budget_no_hedge(dep: Dependency, clock: FakeClock) -> None:
    """Each hedge withdraws from the budget; once it is spent, no further attempt starts."""
    budget = RetryBudget(ratio=0.1, min_per_second=0, capacity_calls=10, clock=clock)
    h = hedge(attempts=3, delay=0, budget=budget, clock=clock)
    task = await start(h, dep)
    assert sorted(dep.started) == [1, 2]
    dep.answer(1, "one")
    await task
    second = Dependency()
    task = await start(h, second)
    clock.advance(10)
    await settle()
    assert second.started == [1]
    second.answer(1, "one")
    await task


async def test_every_call_deposits_into_the_budget(clock: FakeClock) -> None:
    """Calls deposit `ratio` each, so enough calls pay for a hedge again."""
    budget = RetryBudget(ratio=0.5, min_per_second=0, capacity_calls=2, clock=clock)
    while budget.try_withdraw():
        pass

    async def op() -> str:
        return "ok"

    await hedge(delay=None, budget=budget, clock=clock).call(op)
    await hedge(delay=None, budget=budget, clock=clock).call(op)
    assert budget.balance == 1.0


async def test_no_attempt_starts_past_the_ambient_deadline(dep: Dependency, clock: FakeClock) -> None:
    """A deadline inherited by the calling task stops hedging once it has passed."""
    async with timeout(2, clock=clock):
        task = asyncio.ensure_future(hedge(delay=3, clock=clock).call(dep))
        await settle()
    clock.advance(3)
    await settle()
    assert dep.started == [1]
    dep.answer(1, "late")
    assert await task == "late"


async def test_outer_timeout_bounds_every_attempt(dep: Dependency, clock: FakeClock) -> None:
    """An enclosing timeout cancels all attempts at its deadline and is reported as a timeout."""
    guarded = pipeline(timeout(2.5, clock=clock), hedge(attempts=5, delay=1, clock=clock))
    task = asyncio.ensure_future(guarded.call(dep))
    await settle()
    for _ in range(3):
        clock.advance(1)
        await settle()
    with pytest.raises(resilient.TimeoutExceededError):
        await task
    assert (dep.started, sorted(dep.cancelled)) == ([1, 2, 3], [1, 2, 3])
    assert others() == set()


# --- cancellation ------------------------------------------------------------------------


class RecordingClock(FakeClock):
    """A FakeClock that keeps every timer handle it gives out."""

    def __init__(self) -> None:
        super().__init__()
        self.handles: list[Any] = []

    def call_later(self, delay: float, callback: Any) -> Any:
        """Schedule like FakeClock and record the handle."""
        handle = super().call_later(delay, callback)
        self.handles.append(handle)
        return handle


async def test_caller_cancellation_cancels_and_awaits_every_attempt(
    dep: Dependency, clock: FakeClock
) -> None:
    """Cancelling the caller cancels all attempts, waits for them, and raises CancelledError."""
    task = await start(hedge(attempts=3, delay=0, clock=clock), dep)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (sorted(dep.cancelled), sorted(dep.finished)) == ([1, 2, 3], [1, 2, 3])
    assert others() == set()


async def test_cancellation_while_losers_drain_still_waits_for_them(clock: FakeClock) -> None:
    """A caller cancelled while a loser finishes waits for it, then raises CancelledError, not the result."""
    release = asyncio.Event()
    finished: list[str] = []

    @hedge(delay=0, clock=clock)
    async def op() -> str:
        ctx = current_call()
        assert ctx is not None
        if ctx.attempt == 2:
            return "fast"
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await release.wait()
            finished.append("loser")
            raise
        return "slow"

    task = asyncio.ensure_future(op())
    await settle()
    task.cancel()
    await settle()
    task.cancel()  # twice: still waits
    await settle()
    assert not task.done()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished == ["loser"]
    assert others() == set()


async def test_an_attempt_cancelled_by_someone_else_propagates(dep: Dependency, clock: FakeClock) -> None:
    """An attempt's own cancellation is control flow: it ends the call as CancelledError, never hedged."""
    task = await start(hedge(delay=None, on=BaseException, clock=clock), dep)
    attempt = dep.tasks[1]
    assert attempt is not None
    attempt.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert dep.started == [1]


async def test_cancelled_error_raised_by_an_attempt_is_not_handled(clock: FakeClock) -> None:
    """A CancelledError raised by the function is never hedged, even with on=BaseException."""
    calls: list[int] = []

    @hedge(delay=None, on=BaseException, clock=clock)
    async def op() -> None:
        calls.append(1)
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await op()
    assert calls == [1]


async def test_stdlib_timeout_around_a_hedge_restores_cancelling(dep: Dependency, clock: FakeClock) -> None:
    """asyncio.timeout around a hedged call times out, leaves no task behind and no cancel request."""
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0):
            await hedge(delay=0, clock=clock).call(dep)
    current = asyncio.current_task()
    assert current is not None
    assert current.cancelling() == 0
    assert sorted(dep.cancelled) == [1, 2]
    assert others() == set()


async def test_task_group_sibling_failure_cancels_the_hedged_call(dep: Dependency, clock: FakeClock) -> None:
    """In a TaskGroup a failing sibling cancels the hedged call and its attempts; only its error is raised."""

    async def sibling() -> None:
        await settle()
        raise ValueError("sibling")

    async def group() -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(hedge(delay=0, clock=clock).call(dep))
            tg.create_task(sibling())

    with pytest.raises(ExceptionGroup) as info:
        await group()
    assert [type(e) for e in info.value.exceptions] == [ValueError]
    assert sorted(dep.cancelled) == [1, 2]
    assert others() == set()


async def test_no_timer_outlives_the_call(dep: Dependency) -> None:
    """The hedging delay's timer is cancelled once the call has an outcome."""
    clock = RecordingClock()
    task = await start(hedge(attempts=3, delay=1, clock=clock), dep)
    clock.advance(1)
    await settle()
    dep.answer(2, "two")
    await task
    # The first timer fired (and started attempt 2); the second was cancelled.
    assert [handle.cancelled for handle in clock.handles] == [False, True]


async def test_no_timer_outlives_a_cancelled_call(dep: Dependency) -> None:
    """A cancelled caller cancels the hedging timer too."""
    clock = RecordingClock()
    task = await start(hedge(delay=1, clock=clock), dep)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [handle.cancelled for handle in clock.handles] == [True]


# --- policies inside the hedge ---------------------------------------------------------


async def test_a_per_attempt_timeout_turns_a_hang_into_a_hedge(clock: FakeClock) -> None:
    """A timeout inside the hedge fails a hung attempt, which starts the next one at once."""
    hang = asyncio.Event()

    @hedge(delay=None, clock=clock)
    @timeout(1, clock=clock)
    async def op() -> int:
        ctx = current_call()
        assert ctx is not None
        if ctx.attempt == 1:
            await hang.wait()
        return ctx.attempt

    task = asyncio.ensure_future(op())
    await settle()
    clock.advance(1)
    assert await task == 2


async def test_a_bulkhead_inside_frees_every_slot(clock: FakeClock) -> None:
    """Attempts take bulkhead slots; a rejected hedge is a handled failure; losers give their slot back."""
    pool = resilient.bulkhead(1)
    release = asyncio.Event()

    @hedge(attempts=3, delay=0, clock=clock)
    @pool
    async def op() -> str:
        await release.wait()
        return "done"

    task = asyncio.ensure_future(op())
    await settle()
    assert pool.in_use == 1
    release.set()
    assert await task == "done"
    assert pool.in_use == 0


async def test_a_cancelled_loser_is_neutral_for_a_breaker_inside(clock: FakeClock) -> None:
    """The breaker inside counts the winner; the cancelled loser counts as nothing."""
    breaker = circuit_breaker(failure_threshold=1, clock=clock)

    @hedge(delay=0, clock=clock)
    @breaker
    async def op() -> int:
        ctx = current_call()
        assert ctx is not None
        if ctx.attempt == 1:
            await asyncio.Event().wait()
        return ctx.attempt

    assert await op() == 2
    assert breaker.state is resilient.CircuitState.CLOSED


# --- clocks, loops, threads ------------------------------------------------------------


async def test_delay_fires_when_the_clock_is_advanced_from_another_thread(
    dep: Dependency, clock: FakeClock
) -> None:
    """The hedging timer reaches the loop safely when a FakeClock is advanced from a thread."""
    task = await start(hedge(delay=1, clock=clock), dep)
    await asyncio.to_thread(clock.advance, 1)
    await settle()
    assert dep.started == [1, 2]
    dep.answer(1, "one")
    assert await task == "one"


async def test_a_timer_firing_from_a_thread_after_cancellation_starts_nothing(
    dep: Dependency, clock: FakeClock
) -> None:
    """A delay that elapses (from another thread) while the cancelled call winds down starts no attempt."""
    task = await start(hedge(delay=1, clock=clock), dep)
    task.cancel()
    thread = threading.Thread(target=clock.advance, args=(1,))
    thread.start()
    thread.join()
    with pytest.raises(asyncio.CancelledError):
        await task
    await settle()
    assert dep.started == [1]


def test_one_policy_across_event_loops(clock: FakeClock) -> None:
    """A hedge binds no loop: the same hedged function runs under several asyncio.run() in a row."""

    @hedge(delay=0, clock=clock)
    async def op() -> int:
        ctx = current_call()
        assert ctx is not None
        return ctx.attempt

    assert [asyncio.run(op()) for _ in range(3)] == [1, 1, 1]


async def test_system_clock_delay(dep: Dependency) -> None:
    """With the default clock the delay runs on the event loop's timer."""
    task = await start(hedge(delay=0.001), dep)
    while dep.started == [1]:
        await asyncio.sleep(0.001)
    assert dep.started == [1, 2]
    dep.answer(2, "two")
    assert await task == "two"


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks are new in 3.12")
async def test_eager_task_factory(clock: FakeClock) -> None:
    """Attempts that finish while being created (eager tasks) are raced like the others."""
    loop = asyncio.get_running_loop()
    if type(loop).__module__.startswith("uvloop") and sys.version_info >= (3, 13):
        # uvloop calls the factory with eager_start=, which 3.13's eager_task_factory refuses.
        pytest.skip("uvloop cannot run asyncio.eager_task_factory on CPython 3.13")
    loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined,unused-ignore]
    try:

        @hedge(delay=0, on_result=lambda r: r == 1, clock=clock)
        async def op() -> int:
            ctx = current_call()
            assert ctx is not None
            return ctx.attempt

        assert await op() == 2
    finally:
        loop.set_task_factory(None)


# --- configuration ------------------------------------------------------------------------


async def async_predicate(result: object) -> bool:
    """A predicate that needs awaiting: the hedge asks it synchronously."""
    return False


@pytest.mark.parametrize(
    ("kwargs", "error", "param"),
    [
        ({"attempts": 0}, ValueError, "attempts"),
        ({"attempts": 2.0}, TypeError, "attempts"),
        ({"attempts": True}, TypeError, "attempts"),
        # Every attempt may run at once (delay=0): a huge count made a call create tasks without end.
        ({"attempts": 101}, ValueError, "attempts"),
        ({"attempts": 10**400}, ValueError, "attempts"),
        ({"delay": -1}, ValueError, "delay"),
        ({"delay": math.nan}, ValueError, "delay"),
        ({"delay": math.inf}, ValueError, "delay"),
        ({"delay": "1"}, TypeError, "delay"),
        ({"on": KeyboardInterrupt}, ValueError, "on"),
        ({"on": asyncio.CancelledError}, ValueError, "on"),
        ({"on": "ConnectionError"}, TypeError, "on"),
        ({"on_result": 5}, TypeError, "on_result"),
        ({"on_result": 10**5000}, TypeError, "on_result"),  # repr() of it raises ValueError
        ({"on_result": lambda: True}, TypeError, "on_result"),  # failed the call at the first result
        ({"on_result": lambda result, extra: True}, TypeError, "on_result"),
        ({"on_result": async_predicate}, TypeError, "on_result"),  # its coroutine is truthy: always hedged
        ({"budget": object()}, TypeError, "budget"),
        ({"budget": 10**5000}, TypeError, "budget"),
        ({"name": ""}, ValueError, "name"),
        ({"clock": object()}, TypeError, "clock"),
        ({"bus": object()}, TypeError, "bus"),
    ],
)
def test_bad_configuration_is_rejected_naming_the_parameter(
    kwargs: dict[str, Any], error: type[Exception], param: str
) -> None:
    """Bad arguments fail when the factory is called, naming the parameter."""
    with pytest.raises(error, match=param):
        hedge(**kwargs)


def test_a_predicate_without_a_readable_signature_is_trusted() -> None:
    """on_result=bool (a builtin inspect cannot read) is accepted: only a provably wrong shape is refused."""
    assert hedge(on_result=bool).on_result is bool


async def test_the_largest_number_of_attempts_runs_them_all_at_once(clock: FakeClock) -> None:
    """attempts=100 with delay=0 starts 100 attempts at once, and the first answer wins."""
    started: list[int] = []

    @hedge(attempts=100, delay=0, clock=clock)
    async def op() -> int:
        ctx = current_call()
        assert ctx is not None
        started.append(ctx.attempt)
        if ctx.attempt < 100:
            await asyncio.Event().wait()
        return ctx.attempt

    assert (await op(), sorted(started)) == (100, list(range(1, 101)))


def test_configuration_is_kept() -> None:
    """The factory keeps its arguments; a timedelta delay becomes seconds; the default delay is 2 s."""
    h = hedge(attempts=3, delay=timedelta(milliseconds=250), name="search")
    assert (h.attempts, h.delay, h.name, h.kind) == (3, 0.25, "search", "hedge")
    assert hedge().delay == 2.0
    assert repr(h) == "hedge(attempts=3, delay=0.25)"


def test_sync_function_is_rejected_when_decorated() -> None:
    """Decorating a sync function raises TypeError saying to make it async."""

    def op() -> None:
        pass

    h: Any = hedge()  # statically, hedge() accepts only coroutine functions
    with pytest.raises(TypeError, match=r"hedge\(\).*async def"):
        h(op)


def test_sync_function_is_rejected_by_call() -> None:
    """hedge().call() on a sync function raises TypeError before calling it."""
    called: list[int] = []

    h: Any = hedge()
    with pytest.raises(TypeError, match=r"hedge\(\)"):
        h.call(lambda: called.append(1))
    assert called == []


def test_wrap_sync_and_check_sync_refuse() -> None:
    """The policy's sync layer cannot be built, and its sync check names the function."""

    def blocking() -> None:
        pass

    with pytest.raises(TypeError, match="async def"):
        hedge().wrap_sync(lambda ctx, fn, args, kwargs: None)
    with pytest.raises(TypeError, match=r"hedge\(\) cannot guard the sync function .*blocking"):
        hedge().check_sync(blocking)


async def test_decorated_function_keeps_its_identity(clock: FakeClock) -> None:
    """A hedged function keeps its name, is one wrapper, and lists the hedge in its pipeline."""
    h = hedge(clock=clock)

    @h
    async def lookup(key: str) -> str:
        """Look a key up."""
        return key

    assert (lookup.__name__, lookup.__doc__) == ("lookup", "Look a key up.")
    assert pipeline_of(lookup).policies == (h,)
    assert await lookup("k") == "k"


async def test_events_go_to_the_policys_bus(dep: Dependency, clock: FakeClock) -> None:
    """HedgeStarted is emitted on the bus given to the policy, with its name and the operation."""
    bus = EventBus()
    seen: list[HedgeStarted] = []
    bus.subscribe(seen.append, HedgeStarted)
    task = await start(hedge(delay=0, name="search", clock=clock, bus=bus), dep)
    dep.answer(1, "one")
    await task
    assert [(e.name, e.operation, e.attempt) for e in seen] == [("search", Dependency.__qualname__, 2)]
