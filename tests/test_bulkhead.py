"""Tests of ``bulkhead`` with coroutines: capacity, FIFO queue, timeouts, cancellation, events."""

from __future__ import annotations

import asyncio
import math
from datetime import timedelta
from typing import Any

import pytest

from resilient import Bulkhead, BulkheadFullError, bulkhead, pipeline_of, timeout
from resilient._bulkhead_slots import _AsyncWaiter
from resilient._context import Deadline, _deadline
from resilient.events import BulkheadRejected, CallRejected, EventBus
from resilient.testing import FakeClock, capture_events


async def settle() -> None:
    """Let every ready task run until the loop is idle (no real waiting)."""
    for _ in range(10):
        await asyncio.sleep(0)


class Holder:
    """Calls that hold their slot until released, recording the order they started in."""

    def __init__(self, bh: Bulkhead) -> None:
        self.bh = bh
        self.started: list[int] = []
        self.gates: dict[int, asyncio.Event] = {}

    async def hold(self, i: int) -> int:
        self.started.append(i)
        gate = self.gates.setdefault(i, asyncio.Event())
        await gate.wait()
        return i

    def spawn(self, i: int) -> asyncio.Task[int]:
        self.gates.setdefault(i, asyncio.Event())
        return asyncio.create_task(self.bh.call(self.hold, i))

    def release(self, i: int) -> None:
        self.gates[i].set()


# --- configuration -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "param"),
    [
        ((0,), {}, ValueError, "max_concurrent"),
        ((-1,), {}, ValueError, "max_concurrent"),
        (("3",), {}, TypeError, "max_concurrent"),
        ((2.0,), {}, TypeError, "max_concurrent"),
        ((True,), {}, TypeError, "max_concurrent"),
        ((1,), {"max_queue": -1}, ValueError, "max_queue"),
        ((1,), {"max_queue": "2"}, TypeError, "max_queue"),
        ((1,), {"queue_timeout": 0}, ValueError, "queue_timeout"),
        ((1,), {"queue_timeout": -1}, ValueError, "queue_timeout"),
        ((1,), {"queue_timeout": math.nan}, ValueError, "queue_timeout"),
        ((1,), {"queue_timeout": math.inf}, ValueError, "queue_timeout"),
        ((1,), {"queue_timeout": "1"}, TypeError, "queue_timeout"),
        ((1,), {"name": ""}, ValueError, "name"),
        ((1,), {"name": 3}, TypeError, "name"),
        ((1,), {"clock": object()}, TypeError, "clock"),
        ((1,), {"bus": "bus"}, TypeError, "bus"),
    ],
)
def test_bad_configuration_names_the_parameter(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception], param: str
) -> None:
    """Bad configuration fails at factory call time with an error naming the parameter."""
    with pytest.raises(error, match=param):
        bulkhead(*args, **kwargs)


def test_attributes_and_repr() -> None:
    """The configuration is readable back, and the repr shows it."""
    bh = bulkhead(4, max_queue=2, queue_timeout=timedelta(milliseconds=1500), name="db")
    assert (bh.max_concurrent, bh.max_queue, bh.queue_timeout, bh.name) == (4, 2, 1.5, "db")
    assert (bh.in_use, bh.queued) == (0, 0)
    assert repr(bh) == "bulkhead(4, max_queue=2, queue_timeout=1.5, name='db')"


def test_decorating_keeps_the_policy_in_the_pipeline() -> None:
    """A decorated function's pipeline lists the bulkhead."""
    bh = bulkhead(1)

    @bh
    async def f() -> None:
        pass

    assert pipeline_of(f).policies == (bh,)


# --- capacity and queue ------------------------------------------------------------------


async def test_returns_the_function_result() -> None:
    """A call with a free slot runs and returns the function's result; the slot is freed."""
    bh = bulkhead(1)

    @bh
    async def double(x: int) -> int:
        assert bh.in_use == 1
        return 2 * x

    assert await double(21) == 42
    assert bh.in_use == 0


async def test_at_most_max_concurrent_run_and_the_rest_are_rejected() -> None:
    """With no queue, calls beyond max_concurrent are rejected and the function is not called."""
    h = Holder(bulkhead(2, name="db"))
    tasks = [h.spawn(0), h.spawn(1)]
    await settle()
    with pytest.raises(BulkheadFullError) as info:
        await h.bh.call(h.hold, 2)
    assert (info.value.name, info.value.retry_after) == ("db", None)
    assert (h.started, h.bh.in_use, h.bh.queued) == ([0, 1], 2, 0)
    h.release(0)
    h.release(1)
    assert await asyncio.gather(*tasks) == [0, 1]
    assert h.bh.in_use == 0


async def test_every_rejection_raises_a_fresh_error() -> None:
    """Two rejections raise two distinct exception objects."""
    h = Holder(bulkhead(1))
    task = h.spawn(0)
    await settle()
    errors = []
    for _ in range(2):
        with pytest.raises(BulkheadFullError) as info:
            await h.bh.call(h.hold, 1)
        errors.append(info.value)
    assert errors[0] is not errors[1]
    h.release(0)
    await task


async def test_waiters_are_admitted_in_fifo_order() -> None:
    """Queued calls start in the order they arrived."""
    h = Holder(bulkhead(1, max_queue=5))
    first = h.spawn(0)
    await settle()
    waiting = []
    for i in range(1, 6):
        waiting.append(h.spawn(i))
        await settle()
    assert (h.bh.in_use, h.bh.queued) == (1, 5)
    for i in range(6):
        h.release(i)
        await settle()
    await asyncio.gather(first, *waiting)
    assert h.started == [0, 1, 2, 3, 4, 5]
    assert (h.bh.in_use, h.bh.queued) == (0, 0)


async def test_a_full_queue_rejects_at_once() -> None:
    """When the queue holds max_queue waiters, the next call is rejected at once."""
    h = Holder(bulkhead(1, max_queue=1))
    tasks = [h.spawn(0), h.spawn(1)]
    await settle()
    with pytest.raises(BulkheadFullError):
        await h.bh.call(h.hold, 2)
    assert (h.bh.in_use, h.bh.queued, h.started) == (1, 1, [0])
    h.release(0)
    h.release(1)
    await asyncio.gather(*tasks)


async def test_a_shared_bulkhead_limits_every_function_it_guards() -> None:
    """One bulkhead decorating two functions shares its slots between them."""
    bh = bulkhead(1)
    gate = asyncio.Event()

    @bh
    async def a() -> None:
        await gate.wait()

    @bh
    async def b() -> None:
        pass

    task = asyncio.create_task(a())
    await settle()
    with pytest.raises(BulkheadFullError):
        await b()
    gate.set()
    await task


# --- queue timeouts and deadlines ----------------------------------------------------


async def test_queue_timeout_rejects_a_waiter_in_virtual_time(clock: FakeClock) -> None:
    """A waiter still queued after queue_timeout (clock time) is rejected and leaves the queue."""
    h = Holder(bulkhead(1, max_queue=1, queue_timeout=2, clock=clock))
    holder = h.spawn(0)
    await settle()
    waiter = h.spawn(1)
    await settle()
    clock.advance(1.9)
    await settle()
    assert (waiter.done(), h.bh.queued) == (False, 1)
    clock.advance(0.1)
    await settle()
    assert waiter.done()  # not running in a slot it was never given
    with pytest.raises(BulkheadFullError, match="after waiting 2s"):
        await waiter
    assert (h.started, h.bh.queued, h.bh.in_use) == ([0], 0, 1)
    h.release(0)
    await holder
    assert h.bh.in_use == 0


async def test_a_waiter_admitted_in_time_is_not_timed_out_later(clock: FakeClock) -> None:
    """A waiter that gets a slot before its queue_timeout runs normally; the timer is disarmed."""
    h = Holder(bulkhead(1, max_queue=1, queue_timeout=2, clock=clock))
    holder = h.spawn(0)
    await settle()
    waiter = h.spawn(1)
    await settle()
    h.release(0)
    await settle()
    assert (h.started, h.bh.queued) == ([0, 1], 0)
    clock.advance(5)
    h.release(1)
    assert list(await asyncio.gather(holder, waiter)) == [0, 1]
    assert h.bh.in_use == 0


async def test_an_ambient_deadline_bounds_the_wait(clock: FakeClock) -> None:
    """A task started inside a timeout waits in the queue no longer than the deadline left."""
    h = Holder(bulkhead(1, max_queue=1, queue_timeout=10, clock=clock))
    holder = h.spawn(0)
    await settle()
    async with timeout(3, clock=clock):
        # The child inherits the deadline but the parent's timer cannot cancel it.
        waiter = h.spawn(1)
        await settle()
    clock.advance(2.9)
    await settle()
    assert not waiter.done()
    clock.advance(0.1)
    await settle()
    assert waiter.done()
    with pytest.raises(BulkheadFullError):
        await waiter
    assert h.bh.queued == 0
    h.release(0)
    await holder


async def test_a_shorter_queue_timeout_wins_over_the_ambient_deadline(clock: FakeClock) -> None:
    """Inside a long timeout, the wait still ends at queue_timeout."""
    h = Holder(bulkhead(1, max_queue=1, queue_timeout=2, clock=clock))
    holder = h.spawn(0)
    await settle()
    async with timeout(10, clock=clock):
        waiter = h.spawn(1)
        await settle()
    clock.advance(2)
    await settle()
    assert waiter.done()
    with pytest.raises(BulkheadFullError, match="after waiting 2s"):
        await waiter
    h.release(0)
    await holder


async def test_a_passed_ambient_deadline_rejects_without_queueing(clock: FakeClock) -> None:
    """With the ambient deadline already reached, a call that would have to wait is rejected at once."""
    h = Holder(bulkhead(1, max_queue=1, clock=clock))
    holder = h.spawn(0)
    await settle()
    token = _deadline.set(Deadline(clock.monotonic(), clock, None))
    try:
        with pytest.raises(BulkheadFullError) as info:
            await h.bh.call(h.hold, 1)
    finally:
        _deadline.reset(token)
    assert (str(info.value), h.bh.queued) == ("bulkhead is full", 0)
    h.release(0)
    await holder


async def test_an_enclosing_timeout_frees_the_queue_place(clock: FakeClock) -> None:
    """A queued call cut short by an enclosing timeout raises TimeoutExceededError and leaves the queue."""
    bh = bulkhead(1, max_queue=1, clock=clock)
    gate = asyncio.Event()

    @timeout(1, clock=clock)
    @bh
    async def guarded() -> None:
        await gate.wait()

    holder = asyncio.create_task(bh.call(gate.wait))
    await settle()
    waiter = asyncio.create_task(guarded())
    await settle()
    assert bh.queued == 1
    clock.advance(1)
    with pytest.raises(TimeoutError):
        await waiter
    assert (bh.queued, bh.in_use) == (0, 1)
    gate.set()
    await holder
    assert bh.in_use == 0


async def test_waiters_leaving_early_do_not_accumulate(clock: FakeClock) -> None:
    """Many waiters timing out while the slot stays taken leave no dead weight behind."""
    h = Holder(bulkhead(1, max_queue=2, queue_timeout=1, clock=clock))
    holder = h.spawn(0)
    await settle()
    for _ in range(100):
        waiters = [h.spawn(1), h.spawn(2)]
        await settle()
        clock.advance(1)
        await settle()
        assert all(w.done() for w in waiters)
        await asyncio.gather(*waiters, return_exceptions=True)
    assert h.bh.queued == 0
    assert len(h.bh._queue) <= 40
    h.release(0)
    await holder


# --- cancellation, exceptions, control flow ----------------------------------------------


async def test_cancelled_while_queued_leaves_the_queue() -> None:
    """A waiter cancelled in the queue gives up its place; the slot count is untouched."""
    h = Holder(bulkhead(1, max_queue=2))
    holder = h.spawn(0)
    await settle()
    victim, survivor = h.spawn(1), h.spawn(2)
    await settle()
    victim.cancel()
    with pytest.raises(asyncio.CancelledError):
        await victim
    assert (h.bh.queued, h.bh.in_use) == (1, 1)
    h.release(0)
    h.release(2)
    assert list(await asyncio.gather(holder, survivor)) == [0, 2]
    assert (h.started, h.bh.in_use, h.bh.queued) == ([0, 2], 0, 0)


async def test_cancelled_while_running_frees_the_slot() -> None:
    """A running call that is cancelled releases its slot."""
    h = Holder(bulkhead(1))
    task = h.spawn(0)
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert h.bh.in_use == 0


async def test_a_woken_waiter_cancelled_before_it_runs_passes_its_turn_on() -> None:
    """A waiter handed the slot but cancelled before running gives it to the next waiter."""
    bh = bulkhead(1, max_queue=2)
    h = Holder(bh)
    async with bh:
        woken, nxt = h.spawn(1), h.spawn(2)
        await settle()
        assert bh.queued == 2
    # Leaving the block handed the slot to `woken`, which has not run yet.
    assert (bh.in_use, bh.queued) == (1, 1)
    woken.cancel()
    with pytest.raises(asyncio.CancelledError):
        await woken
    await settle()
    assert (h.started, bh.in_use, bh.queued) == ([2], 1, 0)
    h.release(2)
    assert await nxt == 2
    assert bh.in_use == 0


async def test_an_exception_releases_the_slot_and_propagates_unchanged() -> None:
    """The function's exception propagates as the same object and the slot is freed."""
    bh = bulkhead(1)
    boom = ValueError("boom")

    async def fail() -> None:
        raise boom

    with pytest.raises(ValueError) as info:
        await bh.call(fail)
    assert info.value is boom
    assert bh.in_use == 0


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit, GeneratorExit])
async def test_control_flow_exceptions_release_the_slot(exc_type: type[BaseException]) -> None:
    """KeyboardInterrupt, SystemExit and GeneratorExit propagate unchanged and free the slot."""
    bh = bulkhead(1)
    exc = exc_type()

    async def interrupt() -> None:
        raise exc

    with pytest.raises(exc_type) as info:
        await bh.call(interrupt)
    assert info.value is exc
    assert bh.in_use == 0


class ExplodingClock(FakeClock):
    """A clock whose timers raise KeyboardInterrupt when armed (an interrupt while queueing)."""

    def call_later(self, delay: float, callback: Any) -> Any:
        raise KeyboardInterrupt


async def test_an_interrupt_while_queueing_leaves_the_queue() -> None:
    """A KeyboardInterrupt raised while a call joins the queue leaves no waiter behind."""
    h = Holder(bulkhead(1, max_queue=1, queue_timeout=1, clock=ExplodingClock()))
    holder = h.spawn(0)
    await settle()
    with pytest.raises(KeyboardInterrupt):
        await h.bh.call(h.hold, 1)
    assert (h.bh.queued, h.bh.in_use) == (0, 1)
    h.release(0)
    await holder
    assert h.bh.in_use == 0


# --- async with ------------------------------------------------------------------------


async def test_async_with_holds_a_slot_for_the_block() -> None:
    """`async with bulkhead:` holds a slot inside the block and frees it after, even on error."""
    bh = bulkhead(2)
    async with bh, bh:
        assert bh.in_use == 2
        with pytest.raises(BulkheadFullError):
            async with bh:
                pass
    assert bh.in_use == 0
    with pytest.raises(RuntimeError):
        async with bh:
            raise RuntimeError
    assert bh.in_use == 0


async def test_async_with_waits_in_the_queue() -> None:
    """`async with` queues when full and enters once the slot frees."""
    bh = bulkhead(1, max_queue=1)
    entered = asyncio.Event()

    async def enter() -> None:
        async with bh:
            entered.set()

    async with bh:
        task = asyncio.create_task(enter())
        await settle()
        assert (bh.queued, entered.is_set()) == (1, False)
    await task
    assert (entered.is_set(), bh.in_use) == (True, 0)


async def test_exiting_more_than_entering_is_an_error() -> None:
    """Releasing a bulkhead that holds no slot raises instead of corrupting the count."""
    bh = bulkhead(1)
    with pytest.raises(RuntimeError, match="released more often"):
        await bh.__aexit__(None, None, None)
    assert bh.in_use == 0


# --- events ------------------------------------------------------------------------------


async def test_a_rejection_emits_bulkhead_rejected(clock: FakeClock) -> None:
    """A rejection emits one BulkheadRejected with the policy, name, operation and time."""
    bus = EventBus()
    h = Holder(bulkhead(1, name="db", clock=clock, bus=bus))
    task = h.spawn(0)
    await settle()
    clock.advance(7)
    with capture_events(BulkheadRejected, bus=bus) as events, pytest.raises(BulkheadFullError):
        await h.bh.call(h.hold, 1)
    assert events == [
        BulkheadRejected(policy="bulkhead", name="db", operation="Holder.hold", time=7.0, retry_after=None)
    ]
    h.release(0)
    await task


async def test_a_queue_timeout_emits_bulkhead_rejected(clock: FakeClock) -> None:
    """A waiter timed out of the queue emits BulkheadRejected, seen by CallRejected subscribers."""
    bus = EventBus()
    h = Holder(bulkhead(1, max_queue=1, queue_timeout=1, clock=clock, bus=bus))
    holder = h.spawn(0)
    await settle()
    with capture_events(CallRejected, bus=bus) as events:
        waiter = h.spawn(1)
        await settle()
        clock.advance(1)
        await settle()
        assert waiter.done()
        with pytest.raises(BulkheadFullError):
            await waiter
    assert [type(e) for e in events] == [BulkheadRejected]
    h.release(0)
    await holder


async def test_async_with_rejections_have_no_operation() -> None:
    """A rejection of `async with` reports operation None."""
    bus = EventBus()
    bh = bulkhead(1, bus=bus)
    with capture_events(bus=bus) as events:
        async with bh:
            with pytest.raises(BulkheadFullError):
                async with bh:
                    pass
    assert [(type(e), e.operation) for e in events] == [(BulkheadRejected, None)]


async def test_admitted_calls_emit_nothing() -> None:
    """Calls that get a slot, at once or after queueing, emit no bulkhead event."""
    bus = EventBus()
    h = Holder(bulkhead(1, max_queue=1, bus=bus))
    with capture_events(BulkheadRejected, bus=bus) as events:
        tasks = [h.spawn(0), h.spawn(1)]
        await settle()
        h.release(0)
        h.release(1)
        await asyncio.gather(*tasks)
    assert events == []


# --- event loops -------------------------------------------------------------------------

_module_bulkhead = bulkhead(1, max_queue=3)


@_module_bulkhead
async def _module_level(gate: asyncio.Event | None) -> int:
    if gate is not None:
        await gate.wait()
    return 1


async def _contend() -> int:
    gate = asyncio.Event()
    tasks = [asyncio.create_task(_module_level(gate)) for _ in range(4)]
    await settle()
    assert _module_bulkhead.queued == 3
    gate.set()
    return sum(await asyncio.gather(*tasks)) + await _module_level(None)


def test_a_waiter_whose_loop_closed_is_skipped() -> None:
    """A slot is not handed to a waiter whose event loop has closed: it goes to the next or is freed."""
    bh = bulkhead(1, max_queue=1)
    loop = asyncio.new_event_loop()

    async def join_queue() -> Any:
        w = _AsyncWaiter()
        with bh._lock:
            bh._join_locked(w)
        return w

    with bh:
        loop.run_until_complete(join_queue())
        loop.close()
        assert bh.queued == 1
    assert (bh.in_use, bh.queued) == (0, 0)


def test_a_module_level_bulkhead_works_across_event_loops() -> None:
    """A module-level decorated function queues and runs under several asyncio.run() in a row."""
    assert [asyncio.run(_contend()) for _ in range(3)] == [5, 5, 5]
    assert (_module_bulkhead.in_use, _module_bulkhead.queued) == (0, 0)
