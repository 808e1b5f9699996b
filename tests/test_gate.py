"""Tests of ``gate``: admission, in-flight accounting, and ``close()`` (grace, cancel, unwind, report)."""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from resilient import (
    CircuitState,
    Gate,
    GateClosedError,
    GateReport,
    ResilientError,
    circuit_breaker,
    gate,
    pipeline,
    pipeline_of,
)
from resilient.events import CallRejected, EventBus, GateClosed, GateClosing, GateRejected
from resilient.testing import FakeClock, capture_events


async def settle() -> None:
    """Let every ready task run until the loop is idle (no real waiting)."""
    for _ in range(10):
        await asyncio.sleep(0)


async def until(predicate: Callable[[], bool]) -> None:
    """Yield to the loop (and other threads) until *predicate* holds; the guard only stops a hang."""
    guard = time.monotonic() + 30
    while not predicate():
        assert time.monotonic() < guard, "condition never became true"
        await asyncio.sleep(0)
        os.sched_yield()


class Work:
    """Gated coroutines that hold until released (or forever), recording what they saw."""

    def __init__(self, g: Gate) -> None:
        self.g = g
        self.release = asyncio.Event()
        self.ran = 0

    async def held(self) -> str:
        self.ran += 1
        await self.release.wait()
        return "done"

    async def forever(self) -> str:
        self.ran += 1
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    def start(self, fn: Callable[[], Awaitable[str]]) -> asyncio.Task[Any]:
        """Run ``gate.call(fn)`` in a task whose result is the value, or the exception raised."""

        async def outcome() -> Any:
            try:
                return await self.g.call(fn)
            except Exception as exc:
                return exc

        return asyncio.create_task(outcome())


@pytest.fixture
def g(clock: FakeClock) -> Gate:
    """A named gate on the virtual clock."""
    return gate(name="app", clock=clock)


# --- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "param"),
    [
        ({"name": ""}, ValueError, "name"),
        ({"name": 3}, TypeError, "name"),
        ({"clock": object()}, TypeError, "clock"),
        ({"bus": "bus"}, TypeError, "bus"),
    ],
)
def test_bad_configuration_names_the_parameter(
    kwargs: dict[str, Any], error: type[Exception], param: str
) -> None:
    """Bad configuration fails when the factory is called, naming the parameter."""
    with pytest.raises(error, match=param):
        gate(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "param"),
    [
        ({"grace": -1}, ValueError, "grace"),
        ({"grace": math.nan}, ValueError, "grace"),
        ({"grace": math.inf}, ValueError, "grace"),
        ({"grace": "5"}, TypeError, "grace"),
        ({"unwind": -0.5}, ValueError, "unwind"),
        ({"unwind": None}, TypeError, "unwind"),
    ],
)
async def test_bad_close_arguments_change_nothing(
    g: Gate, kwargs: dict[str, Any], error: type[Exception], param: str
) -> None:
    """close() with a bad grace or unwind raises naming it, and leaves the gate open."""
    with pytest.raises(error, match=param):
        await g.close(**kwargs)
    assert (g.closed, await g.call(asyncio.sleep, 0, "open")) == (False, "open")


def test_repr_and_kind() -> None:
    """The repr shows the name; events say policy "gate"."""
    assert (repr(gate()), repr(gate(name="app")), Gate.kind) == ("gate()", "gate(name='app')", "gate")


# --- an open gate ----------------------------------------------------------------------------


async def test_an_open_gate_counts_calls_in_flight(g: Gate) -> None:
    """A call is counted while it runs and forgotten when it ends; its result passes through."""
    work = Work(g)
    tasks = [work.start(work.held) for _ in range(3)]
    await settle()
    assert g.in_flight == 3
    work.release.set()
    assert [await t for t in tasks] == ["done"] * 3
    assert (g.in_flight, g._tasks, g.closed, g.report) == (0, {}, False, None)


async def test_failures_pass_through_as_the_same_object(g: Gate) -> None:
    """An exception from the function propagates unchanged, and the call is no longer counted."""
    boom = ValueError("boom")

    async def fail() -> None:
        raise boom

    with pytest.raises(ValueError) as info:
        await g.call(fail)
    assert (info.value, g.in_flight) == (boom, 0)


async def test_a_cancelled_call_on_an_open_gate_leaks_nothing(g: Gate) -> None:
    """Cancelling a call propagates CancelledError as is and frees its place."""
    work = Work(g)
    task = asyncio.create_task(g.call(work.forever))
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert g.in_flight == 0


async def test_nested_calls_in_one_task_are_counted_each(g: Gate) -> None:
    """A gated call made inside another (same task) counts as a second call in flight."""
    seen: list[int] = []

    @g
    async def inner() -> None:
        seen.append(g.in_flight)

    @g
    async def outer() -> None:
        await inner()
        seen.append(g.in_flight)

    await outer()
    assert (seen, g.in_flight) == ([2, 1], 0)


async def test_a_coroutine_driven_outside_any_task_is_refused(g: Gate) -> None:
    """A gated coroutine stepped by hand, in a loop callback (no task to cancel), raises RuntimeError."""

    @g
    async def work() -> None:
        pass

    coro = work()
    raised: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    def step() -> None:
        try:
            coro.send(None)
        except BaseException as exc:
            raised.set_result(exc)

    asyncio.get_running_loop().call_soon(step)
    err = await raised
    assert (type(err), str(err)) == (RuntimeError, "gate() guards calls made inside an asyncio task")
    assert g.in_flight == 0


# --- closing: admission ----------------------------------------------------------------------


async def test_close_with_nothing_in_flight_reports_zeros(g: Gate) -> None:
    """Closing an idle gate returns at once with every count zero."""
    report = await g.close(grace=5)
    assert (report, g.closed, g.report) == (
        GateReport(in_flight=0, finished=0, cancelled=0, still_running=0, sync_running=0),
        True,
        report,
    )


async def test_a_closed_gate_refuses_calls_without_calling(g: Gate) -> None:
    """After close, a call raises a fresh GateClosedError and the function is not called."""
    work = Work(g)
    await g.close()
    with capture_events(GateRejected) as events:
        first = await work.start(work.held)
        second = await work.start(work.held)
    assert isinstance(first, GateClosedError)
    assert first is not second
    assert (first.name, first.retry_after, first.reason, work.ran) == ("app", None, "closed", 0)
    assert isinstance(first, ResilientError)
    rejected = [(type(e), e.policy, e.name, getattr(e, "retry_after", 0)) for e in events]
    assert rejected == [(GateRejected, "gate", "app", None)] * 2
    assert issubclass(GateRejected, CallRejected)


async def test_a_gate_closed_error_pickles() -> None:
    """GateClosedError survives pickling with its name and reason."""
    import pickle

    err = pickle.loads(pickle.dumps(GateClosedError("app", "cancelled")))
    assert (type(err), err.name, err.reason, err.retry_after, str(err)) == (
        GateClosedError,
        "app",
        "cancelled",
        None,
        str(GateClosedError("app", "cancelled")),
    )


async def test_a_closed_gate_rejection_is_neutral_for_a_breaker(clock: FakeClock) -> None:
    """A gate's rejection raised inside a breaker never counts as a failure."""
    g = gate(clock=clock)
    breaker = circuit_breaker(failure_threshold=1, clock=clock)
    guarded = pipeline(breaker, g)
    await g.close()
    for _ in range(3):
        with pytest.raises(GateClosedError):
            await guarded.call(asyncio.sleep, 0)
    assert (breaker.state, breaker.stats().failures) == (CircuitState.CLOSED, 0)


# --- closing: grace, cancel, unwind ------------------------------------------------------------


async def test_calls_that_finish_within_grace_are_reported_finished(g: Gate, clock: FakeClock) -> None:
    """close() waits for the calls in flight and returns as soon as they have ended."""
    work = Work(g)
    tasks = [work.start(work.held) for _ in range(2)]
    await settle()
    closer = asyncio.create_task(g.close(grace=10))
    await settle()
    assert (closer.done(), g.closed) == (False, True)
    work.release.set()
    report = await closer
    assert report == GateReport(in_flight=2, finished=2, cancelled=0, still_running=0, sync_running=0)
    assert [await t for t in tasks] == ["done", "done"]
    assert clock.monotonic() == 0  # no virtual time had to pass


async def test_calls_left_at_the_end_of_grace_are_cancelled_into_gate_closed_error(
    g: Gate, clock: FakeClock
) -> None:
    """After grace, a call still running is cancelled; its caller gets GateClosedError("cancelled")."""
    work = Work(g)
    task = work.start(work.forever)
    await settle()
    closer = asyncio.create_task(g.close(grace=5))
    await settle()
    clock.advance(4.9)
    await settle()
    assert not closer.done()
    clock.advance(0.1)
    report = await closer
    err = await task
    assert isinstance(err, GateClosedError)
    assert (err.reason, type(err.__cause__)) == ("cancelled", asyncio.CancelledError)
    assert report == GateReport(in_flight=1, finished=0, cancelled=1, still_running=0, sync_running=0)


async def test_the_cancelled_task_goes_on_with_a_clean_cancelling_count(g: Gate, clock: FakeClock) -> None:
    """The task of a cancelled call catches GateClosedError and carries on: no stray cancellation left."""
    work = Work(g)
    after: list[Any] = []

    async def handler() -> None:
        try:
            await g.call(work.forever)
        except GateClosedError:
            after.append(asyncio.current_task().cancelling())  # type: ignore[union-attr]
        await asyncio.sleep(0)  # a later await is not cancelled
        after.append("went on")

    task = asyncio.create_task(handler())
    await settle()
    await g.close(grace=0)
    await task
    assert after == [0, "went on"]


async def test_a_grace_of_zero_cancels_at_once(g: Gate) -> None:
    """close(grace=0) cancels every async call in flight without waiting."""
    work = Work(g)
    tasks = [work.start(work.forever) for _ in range(3)]
    await settle()
    report = await g.close(grace=timedelta(0))
    assert report.cancelled == 3
    assert [type(await t) for t in tasks] == [GateClosedError] * 3


async def test_an_outer_cancellation_is_never_reported_as_the_gates(g: Gate) -> None:
    """A task cancelled from outside as well as by the gate ends with CancelledError."""
    work = Work(g)
    task = asyncio.create_task(g.call(work.forever))
    await settle()
    closer = asyncio.create_task(g.close(grace=0))
    await asyncio.sleep(0)  # the gate has cancelled the call; it has not run since
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    report = await closer
    assert (report.cancelled, task.cancelling()) == (1, 1)


async def test_a_call_cancelled_from_outside_during_grace_counts_as_finished(g: Gate) -> None:
    """A call that ends during grace (any way) was not cancelled by the gate: it is finished."""
    work = Work(g)
    task = asyncio.create_task(g.call(work.forever))
    await settle()
    closer = asyncio.create_task(g.close(grace=5))
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await closer).finished == 1


async def test_a_call_that_swallows_the_cancellation_is_still_running(g: Gate, clock: FakeClock) -> None:
    """A call that ignores the cancellation past unwind is reported still running; it may end later."""
    release = asyncio.Event()
    cancelling: list[int] = []

    async def stubborn() -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await release.wait()  # cleanup that outlasts unwind
        cancelling.append(asyncio.current_task().cancelling())  # type: ignore[union-attr]
        return "late"

    task = asyncio.create_task(g.call(stubborn))
    await settle()
    closer = asyncio.create_task(g.close(grace=1, unwind=2))
    await settle()
    clock.advance(1)
    await settle()
    assert not closer.done()
    clock.advance(2)
    report = await closer
    assert report == GateReport(in_flight=1, finished=0, cancelled=0, still_running=1, sync_running=0)
    assert report.running == 1
    release.set()
    assert await task == "late"  # it swallowed the cancellation: its value is returned
    assert (cancelling, task.cancelling(), g.in_flight, g.report) == ([1], 0, 0, report)


async def test_cancelled_calls_that_unwind_in_time_are_cancelled_not_running(
    g: Gate, clock: FakeClock
) -> None:
    """A cancelled call whose cleanup ends within unwind counts as cancelled."""
    release = asyncio.Event()

    async def slow_cleanup() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await release.wait()

    task = asyncio.create_task(g.call(slow_cleanup))
    await settle()
    closer = asyncio.create_task(g.close(grace=0, unwind=5))
    await settle()
    assert not closer.done()
    release.set()
    report = await closer
    assert (report.cancelled, report.still_running) == (1, 0)
    with pytest.raises(GateClosedError):
        await task


async def test_nested_calls_from_in_flight_work_are_admitted_while_closing(g: Gate) -> None:
    """In-flight work may make further calls through the gate during grace; they are counted."""
    release = asyncio.Event()
    outcomes: list[str] = []

    @g
    async def step(i: int) -> str:
        return f"step {i}"

    @g
    async def job() -> None:
        outcomes.append(await step(1))
        await release.wait()
        outcomes.append(await step(2))  # the gate is closing now

    task = asyncio.create_task(job())
    await settle()
    closer = asyncio.create_task(g.close(grace=5))
    await settle()
    with pytest.raises(GateClosedError):
        await step(3)  # not inside the job: refused
    release.set()
    report = await closer
    await task
    assert outcomes == ["step 1", "step 2"]
    assert report == GateReport(in_flight=2, finished=2, cancelled=0, still_running=0, sync_running=0)


async def test_a_task_with_nested_calls_is_cancelled_once_and_unwinds_cleanly(g: Gate) -> None:
    """Cancelling a task with two nested gated calls: the inner converts, the outer passes it on."""

    @g
    async def inner() -> None:
        await asyncio.Event().wait()

    @g
    async def outer() -> None:
        await inner()

    task = asyncio.create_task(outer())
    await settle()
    report = await g.close(grace=0)
    with pytest.raises(GateClosedError) as info:
        await task
    assert (info.value.reason, task.cancelling()) == ("cancelled", 0)
    assert report == GateReport(in_flight=2, finished=0, cancelled=2, still_running=0, sync_running=0)


# --- close(): idempotent, concurrent, interrupted, misused ---------------------------------------


async def test_close_is_idempotent(g: Gate) -> None:
    """A second close returns the same report object, whatever its arguments."""
    first = await g.close(grace=1)
    assert await g.close(grace=99) is first


async def test_concurrent_closes_share_one_shutdown(g: Gate, clock: FakeClock) -> None:
    """Closes racing each other all return the one report; only one emits GateClosing."""
    work = Work(g)
    work.start(work.forever)
    await settle()
    with capture_events(GateClosing, GateClosed) as events:
        closers = [asyncio.create_task(g.close(grace=3)) for _ in range(3)]
        await settle()
        clock.advance(3)
        reports = [await c for c in closers]
    assert reports[0] is reports[1] is reports[2]
    assert [type(e) for e in events] == [GateClosing, GateClosed]


async def test_a_waiting_close_cancelled_leaves_the_shutdown_running(g: Gate, clock: FakeClock) -> None:
    """Cancelling a close that waits on another one does not disturb the shutdown."""
    work = Work(g)
    work.start(work.held)
    await settle()
    first = asyncio.create_task(g.close(grace=3))
    second = asyncio.create_task(g.close(grace=3))
    await settle()
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    work.release.set()
    assert (await first).finished == 1


async def test_an_interrupted_close_is_carried_on_by_the_next(g: Gate, clock: FakeClock) -> None:
    """If the running close is cancelled, the gate stays closed and the next close finishes the job."""
    work = Work(g)
    task = work.start(work.forever)
    await settle()
    first = asyncio.create_task(g.close(grace=10))
    waiter = asyncio.create_task(g.close(grace=10))
    await settle()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert g.closed
    await settle()  # the waiting close takes over, with the first close's grace end
    clock.advance(10)
    report = await waiter
    assert report == GateReport(in_flight=1, finished=0, cancelled=1, still_running=0, sync_running=0)
    assert isinstance(await task, GateClosedError)


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
async def test_a_closing_handler_interrupting_the_close_leaves_it_to_the_next(
    clock: FakeClock, interrupt: type[BaseException]
) -> None:
    """A GateClosing handler raising KeyboardInterrupt interrupts close(); the next close() carries on."""
    bus = EventBus()
    raised: list[BaseException] = []

    def handler(event: GateClosing) -> None:
        if not raised:
            raised.append(interrupt("stop"))
            raise raised[0]

    bus.subscribe(handler, GateClosing)
    g = gate(clock=clock, bus=bus)
    work = Work(g)
    task = work.start(work.held)
    await settle()
    with pytest.raises(interrupt) as info:
        await g.close(grace=5)
    assert info.value is raised[0]
    assert g.closed
    second = asyncio.create_task(g.close(grace=5))
    await settle()
    work.release.set()
    await settle()
    assert second.done(), "the next close() waited for the interrupted one forever"
    report = second.result()
    assert (report.in_flight, report.finished, report.cancelled, report.running) == (1, 1, 0, 0)
    assert await task == "done"


async def test_close_inside_a_guarded_call_raises_and_leaves_the_gate_open(g: Gate) -> None:
    """Awaiting close() inside a call the gate guards would wait for itself: RuntimeError."""

    @g
    async def shutdown_endpoint() -> GateReport:
        return await g.close()

    with pytest.raises(RuntimeError, match="wait for itself"):
        await shutdown_endpoint()
    assert (g.closed, g.in_flight) == (False, 0)


# --- events and the bus ------------------------------------------------------------------------------


async def test_close_emits_closing_then_closed_with_the_counts(clock: FakeClock) -> None:
    """GateClosing carries what is in flight and the grace; GateClosed the report's counts."""
    bus = EventBus()
    events: list[Any] = []
    bus.subscribe(events.append, GateClosing, GateClosed)
    g = gate(name="app", clock=clock, bus=bus)
    work = Work(g)
    work.start(work.forever)
    work.start(work.held)
    await settle()
    closer = asyncio.create_task(g.close(grace=2))
    await settle()
    work.release.set()
    await settle()
    clock.advance(2)
    report = await closer
    closing, closed = events
    assert (type(closing), closing.policy, closing.name, closing.in_flight, closing.grace) == (
        GateClosing,
        "gate",
        "app",
        2,
        2.0,
    )
    assert (
        closed.in_flight,
        closed.finished,
        closed.cancelled,
        closed.still_running,
        closed.sync_running,
    ) == (
        report.in_flight,
        report.finished,
        report.cancelled,
        report.still_running,
        report.sync_running,
    )
    assert (report.finished, report.cancelled) == (1, 1)


async def test_close_drains_the_bus(clock: FakeClock) -> None:
    """An async handler of GateClosed has run by the time close() returns."""
    bus = EventBus()
    handled: list[str] = []

    async def handler(event: GateClosed) -> None:
        await asyncio.sleep(0)
        handled.append(type(event).__name__)

    bus.subscribe(handler, GateClosed)
    g = gate(clock=clock, bus=bus)
    await g.close()
    assert handled == ["GateClosed"]


async def test_a_hanging_handler_holds_the_close_for_unwind_at_most(clock: FakeClock) -> None:
    """Draining the bus is bounded by unwind: close() returns while a handler still runs."""
    bus = EventBus()
    release = asyncio.Event()

    async def hangs(event: GateClosed) -> None:
        await release.wait()

    bus.subscribe(hangs, GateClosed)
    g = gate(clock=clock, bus=bus)
    closer = asyncio.create_task(g.close(unwind=3))
    await settle()
    assert not closer.done()
    clock.advance(3)
    await closer
    assert bus.pending == 1  # left to the bus, which still holds it
    release.set()
    await bus.drain()


async def test_unwind_zero_does_not_wait_for_the_bus(clock: FakeClock) -> None:
    """With unwind=0 close() returns without waiting for async handlers."""
    bus = EventBus()
    release = asyncio.Event()

    async def slow(event: GateClosed) -> None:
        await release.wait()

    bus.subscribe(slow, GateClosed)
    g = gate(clock=clock, bus=bus)
    await g.close(unwind=0)
    assert bus.pending == 1
    release.set()
    await bus.drain()


# --- several event loops ------------------------------------------------------------------------


class LoopThread(threading.Thread):
    """An event loop in a thread of its own, running gated calls on request."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self.ready.set)
        self.loop.run_forever()
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())

    def submit(self, coro: Any) -> Any:
        import concurrent.futures

        fut: concurrent.futures.Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.join(timeout=30)
        self.loop.close()


@pytest.fixture
def other_loop() -> Iterator[LoopThread]:
    """A second event loop, running in its own thread."""
    t = LoopThread()
    t.start()
    t.ready.wait(30)
    yield t
    t.stop()


async def test_a_call_on_another_loop_is_cancelled_through_that_loop(g: Gate, other_loop: LoopThread) -> None:
    """close() in one loop cancels a call running in another loop's thread, and is woken when it ends."""

    async def forever() -> None:
        await asyncio.Event().wait()

    async def outcome() -> Any:
        try:
            return await g.call(forever)
        except GateClosedError as exc:
            return exc

    fut = other_loop.submit(outcome())
    await until(lambda: g.in_flight == 1)
    report = await g.close(grace=0)
    err = fut.result(timeout=30)
    assert (type(err), err.reason) == (GateClosedError, "cancelled")
    assert report == GateReport(in_flight=1, finished=0, cancelled=1, still_running=0, sync_running=0)


async def test_a_call_on_another_loop_finishing_within_grace_wakes_the_close(
    g: Gate, other_loop: LoopThread
) -> None:
    """A call ending in another loop wakes the close waiting in this one (thread-safe)."""
    release = threading.Event()

    async def held() -> str:
        while not release.is_set():
            await asyncio.sleep(0)
        return "done"

    fut = other_loop.submit(g.call(held))
    await until(lambda: g.in_flight == 1)
    closer = asyncio.create_task(g.close(grace=60))
    await settle()
    release.set()
    report = await closer
    assert (report.finished, fut.result(timeout=30)) == (1, "done")


def test_a_call_whose_loop_is_gone_is_reported_still_running(clock: FakeClock) -> None:
    """A call stuck in a closed event loop cannot be cancelled: it is reported still running."""
    g = gate(clock=clock)
    dead = asyncio.new_event_loop()

    async def forever() -> None:
        await asyncio.Event().wait()

    task = dead.create_task(g.call(forever))
    dead.run_until_complete(asyncio.sleep(0))  # the call is in flight, suspended
    dead.close()
    report = asyncio.run(g.close(grace=0, unwind=0))
    assert report == GateReport(in_flight=1, finished=0, cancelled=0, still_running=1, sync_running=0)
    assert not task.done()
    task._log_destroy_pending = False  # type: ignore[attr-defined]
    task.get_coro().close()  # what garbage collection would do: the call unwinds
    assert g.in_flight == 0


# --- sync calls (threads) ---------------------------------------------------------------------------


class SyncWork:
    """A gated sync function that blocks its thread until released."""

    def __init__(self, g: Gate) -> None:
        self.release = threading.Event()
        self.started = threading.Semaphore(0)
        self.fn = g(self._held)
        self.threads: list[threading.Thread] = []
        self.outcomes: list[Any] = []

    def _held(self) -> str:
        self.started.release()
        assert self.release.wait(30)
        return "done"

    def spawn(self) -> None:
        def target() -> None:
            try:
                self.outcomes.append(self.fn())
            except Exception as exc:
                self.outcomes.append(exc)

        t = threading.Thread(target=target, daemon=True)
        self.threads.append(t)
        t.start()
        assert self.started.acquire(timeout=30)

    def join(self) -> None:
        self.release.set()
        for t in self.threads:
            t.join(timeout=30)
            assert not t.is_alive()


@pytest.fixture
def sync_work(g: Gate) -> Iterator[SyncWork]:
    """Blocking gated calls in threads; released and joined at the end."""
    work = SyncWork(g)
    yield work
    work.join()


async def test_sync_calls_are_counted_in_flight(g: Gate, sync_work: SyncWork) -> None:
    """A sync call running in a thread counts as in flight until it returns."""
    sync_work.spawn()
    sync_work.spawn()
    assert g.in_flight == 2
    sync_work.join()
    assert (g.in_flight, sync_work.outcomes) == (0, ["done", "done"])


async def test_a_thread_finishing_within_grace_is_finished(g: Gate, sync_work: SyncWork) -> None:
    """close() waits for sync calls too, and is woken from their thread."""
    sync_work.spawn()
    closer = asyncio.create_task(g.close(grace=60))
    await settle()
    sync_work.release.set()
    report = await closer
    assert report == GateReport(in_flight=1, finished=1, cancelled=0, still_running=0, sync_running=0)


async def test_a_thread_is_never_cancelled_and_reported_apart(
    g: Gate, clock: FakeClock, sync_work: SyncWork
) -> None:
    """A sync call still running after grace and unwind is reported in sync_running, never cancelled."""
    sync_work.spawn()
    closer = asyncio.create_task(g.close(grace=1, unwind=1))
    await settle()
    clock.advance(1)
    await settle()
    clock.advance(1)
    report = await closer
    assert report == GateReport(in_flight=1, finished=0, cancelled=0, still_running=0, sync_running=1)
    sync_work.join()
    assert (sync_work.outcomes, g.in_flight) == (["done"], 0)


async def test_a_closed_gate_refuses_sync_calls(g: Gate) -> None:
    """A sync call after close raises GateClosedError without running."""
    ran: list[int] = []

    @g
    def work() -> None:
        ran.append(1)

    await g.close()
    with pytest.raises(GateClosedError):
        work()
    assert ran == []


def test_nested_sync_calls_in_a_thread_in_flight_are_admitted(clock: FakeClock) -> None:
    """A sync call made from inside a sync call in flight is admitted while the gate closes."""
    g = gate(clock=clock)
    closing = threading.Event()
    outcome: list[Any] = []

    @g
    def step() -> str:
        return "step"

    @g
    def job() -> None:
        assert closing.wait(30)
        outcome.append(step())

    worker = threading.Thread(target=job, daemon=True)
    worker.start()

    async def close() -> GateReport:
        await until(lambda: g.in_flight == 1)
        task = asyncio.create_task(g.close(grace=60))
        await until(lambda: g.closed)
        closing.set()
        return await task

    report = asyncio.run(close())
    worker.join(timeout=30)
    assert (outcome, report.in_flight, report.finished) == (["step"], 2, 2)


async def test_a_sync_call_from_a_task_in_flight_is_admitted(g: Gate) -> None:
    """A sync gated function called by in-flight async work (same task) is admitted while closing."""
    release = asyncio.Event()

    @g
    def helper() -> str:
        return "helper"

    @g
    async def job() -> str:
        await release.wait()
        return helper()

    task = asyncio.create_task(job())
    await settle()
    closer = asyncio.create_task(g.close(grace=5))
    await settle()
    release.set()
    assert (await task, (await closer).in_flight) == ("helper", 2)


def test_an_interrupt_in_a_sync_call_frees_its_place() -> None:
    """KeyboardInterrupt propagates as is from a sync call and the call is no longer counted."""
    g = gate()

    @g
    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert g.in_flight == 0


def test_close_from_a_sync_program_with_asyncio_run(clock: FakeClock) -> None:
    """A sync program closes its gate with asyncio.run(gate.close(...))."""
    g = gate(clock=clock)
    assert asyncio.run(g.close(grace=1)) == GateReport(
        in_flight=0, finished=0, cancelled=0, still_running=0, sync_running=0
    )


async def test_pipeline_of_a_gated_function_lists_the_gate(g: Gate) -> None:
    """A gate is an ordinary policy in the pipeline."""

    @g
    async def work() -> None:
        pass

    assert pipeline_of(work).policies == (g,)


# --- the races the lock-free open gate must get right ---------------------------------------------


class CloseOnRegistration(dict):  # type: ignore[type-arg]
    """A map of calls in flight that closes the gate right after a call registers in it.

    It puts a close's critical section exactly between a call's registration
    and its reading of the closed flag: the interleaving another thread's
    close() can produce, made deterministic.
    """

    def __init__(self, gate: Gate, after: int) -> None:
        super().__init__()
        self.gate = gate
        self.after = after

    def __setitem__(self, key: Any, value: int) -> None:
        super().__setitem__(key, value)
        self.after -= 1
        if self.after == 0:
            with self.gate._lock:
                self.gate._begin_locked(60.0)


async def test_a_call_registered_before_the_close_copies_the_maps_is_admitted(clock: FakeClock) -> None:
    """A call that registered, then (after a close began) read the flag, is one of the close's calls."""
    g = gate(clock=clock)
    g._tasks = CloseOnRegistration(g, after=1)

    @g
    async def work() -> str:
        return "ran"

    assert await work() == "ran"
    assert g._closing is not None
    assert (g._closing.in_flight, g._closing.finished, g._closing.tasks) == (1, 1, {})


def test_a_sync_call_registered_before_the_copy_is_admitted(clock: FakeClock) -> None:
    """The same race for a sync call: admitted and accounted for."""
    g = gate(clock=clock)
    g._threads = CloseOnRegistration(g, after=1)

    @g
    def work() -> str:
        return "ran"

    assert work() == "ran"
    assert g._closing is not None
    assert (g._closing.in_flight, g._closing.finished) == (1, 1)


def test_cancelling_a_call_that_already_ended_does_nothing(g: Gate) -> None:
    """A cancellation handed to another loop that arrives after the call ended cancels nothing."""

    async def main() -> bool:
        async def idle() -> None:
            await asyncio.sleep(0)

        task = asyncio.create_task(idle())
        with g._lock:
            g._begin_locked(0.0)
        g._cancel(task)  # not in flight through the gate
        await task
        return task.cancelled()

    assert asyncio.run(main()) is False
    assert g._cancels == {}


async def test_after_the_close_returned_nested_calls_are_refused(g: Gate, clock: FakeClock) -> None:
    """A call still running after close() returned may not start nested calls any more."""
    release = asyncio.Event()

    @g
    async def step() -> str:
        return "step"

    async def stubborn() -> Any:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await release.wait()
        try:
            return await step()
        except GateClosedError as exc:
            return exc

    task = asyncio.create_task(g.call(stubborn))
    await settle()
    report = await g.close(grace=0, unwind=0)
    release.set()
    outcome = await task
    assert (report.still_running, type(outcome), g.in_flight) == (1, GateClosedError, 0)


def test_after_the_close_returned_a_thread_may_not_start_nested_calls(clock: FakeClock) -> None:
    """A sync call still running after close() returned may not start nested calls; its own call ends."""
    g = gate(clock=clock)
    closed = threading.Event()
    outcome: list[Any] = []

    @g
    def step() -> str:
        return "step"

    @g
    def job() -> None:
        assert closed.wait(30)
        try:
            outcome.append(step())
        except GateClosedError as exc:
            outcome.append(type(exc))

    worker = threading.Thread(target=job, daemon=True)
    worker.start()

    async def close() -> GateReport:
        await until(lambda: g.in_flight == 1)
        return await g.close(grace=0, unwind=0)

    report = asyncio.run(close())
    closed.set()
    worker.join(30)
    assert (report.sync_running, outcome, g.in_flight) == (1, [GateClosedError], 0)


def test_a_call_ending_after_the_closing_loop_is_gone_wakes_nothing(clock: FakeClock) -> None:
    """A sync call ending after the loop running close() was closed: its wake-up is dropped quietly."""
    g = gate(clock=clock)
    release = threading.Event()
    started = threading.Event()

    @g
    def job() -> None:
        started.set()
        assert release.wait(30)

    worker = threading.Thread(target=job, daemon=True)
    worker.start()
    assert started.wait(30)
    loop = asyncio.new_event_loop()
    closer = loop.create_task(g.close(grace=60))
    for _ in range(3):
        loop.run_until_complete(asyncio.sleep(0))  # the close now waits for the call
    assert g._closing is not None
    assert g._closing.waiter is not None
    loop.close()
    release.set()
    worker.join(30)
    assert g.in_flight == 0
    closer._log_destroy_pending = False  # type: ignore[attr-defined]
    closer.get_coro().close()


async def test_closes_from_two_event_loops_share_one_report(g: Gate, other_loop: LoopThread) -> None:
    """A close awaited in another loop's thread waits for the running one and gets its report."""
    work = Work(g)
    work.start(work.held)
    await settle()
    here = asyncio.create_task(g.close(grace=60))
    await settle()
    there = other_loop.submit(g.close(grace=1))
    await until(lambda: g._runner is not None)
    work.release.set()
    report = await here
    assert there.result(timeout=30) is report
    assert report.finished == 1


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
async def test_control_flow_while_closing_propagates_and_counts_as_finished(
    g: Gate, exc_type: type[BaseException]
) -> None:
    """A call raising KeyboardInterrupt/SystemExit during grace: the same object propagates, not converted."""
    release = asyncio.Event()
    exc = exc_type()

    async def body() -> None:
        await release.wait()
        raise exc

    async def caller() -> BaseException | None:
        try:
            await g.call(body)
        except BaseException as caught:
            return caught
        return None

    task = asyncio.create_task(caller())
    await settle()
    closer = asyncio.create_task(g.close(grace=5))
    await settle()
    release.set()
    assert await task is exc
    assert (await closer).finished == 1


async def test_a_call_retrying_under_the_gate_is_cancelled_not_retried(clock: FakeClock) -> None:
    """The gate cancels a retrying call mid-attempt: not retried, the caller gets GateClosedError."""
    from resilient import retry

    g = gate(clock=clock)
    attempts: list[int] = []

    @g
    @retry(attempts=5, on=ConnectionError, backoff=0.5, clock=clock)
    async def flaky() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError
        await asyncio.Event().wait()  # the second attempt hangs

    task = asyncio.create_task(flaky())
    await settle()
    report = await g.close(grace=0)
    with pytest.raises(GateClosedError):
        await task
    assert (len(attempts), report.cancelled) == (2, 1)
