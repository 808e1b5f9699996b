"""Tests of ``bulkhead`` with sync functions and real threads (no real sleeping)."""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from resilient import Bulkhead, BulkheadFullError, bulkhead
from resilient.events import BulkheadRejected, EventBus
from resilient.testing import FakeClock, capture_events


def wait_until(predicate: Callable[[], bool]) -> None:
    """Yield the CPU until *predicate* holds (the deadline only guards against a hang)."""
    guard = time.monotonic() + 30
    while not predicate():
        assert time.monotonic() < guard, "condition never became true"
        os.sched_yield()


def queued_is(bh: Bulkhead, n: int) -> bool:
    """Whether *n* calls wait in *bh*'s queue."""
    return bh.queued == n


class Worker(threading.Thread):
    """A thread running one call and keeping its outcome."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.fn = fn
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as exc:
            self.error = exc


@pytest.fixture
def threads() -> Iterator[list[Worker]]:
    """Workers to start; every one is joined at the end of the test."""
    started: list[Worker] = []
    yield started
    for t in started:
        t.join(timeout=30)
        assert not t.is_alive()


def spawn(threads: list[Worker], fn: Callable[[], Any]) -> Worker:
    """Start a worker thread running *fn*."""
    t = Worker(fn)
    threads.append(t)
    t.start()
    return t


def test_a_sync_call_returns_its_result_and_frees_the_slot() -> None:
    """A sync function with a free slot runs and returns; the slot is freed."""
    bh = bulkhead(1)

    @bh
    def double(x: int) -> int:
        assert bh.in_use == 1
        return 2 * x

    assert double(21) == 42
    assert bh.in_use == 0


def test_at_most_max_concurrent_threads_run(threads: list[Worker]) -> None:
    """Two threads hold both slots; a third call is rejected without calling the function."""
    bh = bulkhead(2, name="pool")
    inside = threading.Barrier(3)
    gate = threading.Event()
    calls: list[int] = []

    @bh
    def work(i: int) -> int:
        calls.append(i)
        inside.wait()
        gate.wait()
        return i

    workers = [spawn(threads, functools.partial(work, i)) for i in range(2)]
    inside.wait()
    with pytest.raises(BulkheadFullError) as info:
        work(2)
    assert (info.value.name, bh.in_use, sorted(calls)) == ("pool", 2, [0, 1])
    gate.set()
    for t in workers:
        t.join()
    assert ([t.result for t in workers], bh.in_use) == ([0, 1], 0)


def test_sync_waiters_are_admitted_in_fifo_order(threads: list[Worker]) -> None:
    """Threads queued one after another run in arrival order."""
    bh = bulkhead(1, max_queue=4)
    order: list[int] = []
    guarded = bh(order.append)
    with bh:
        for i in range(4):
            spawn(threads, functools.partial(guarded, i))
            wait_until(functools.partial(queued_is, bh, i + 1))
    for t in threads:
        t.join()
    assert (order, bh.in_use, bh.queued) == ([0, 1, 2, 3], 0, 0)


def test_a_full_queue_rejects_a_sync_call_at_once() -> None:
    """With no queue, a sync call finding no free slot is rejected at once with an event."""
    bus = EventBus()
    bh = bulkhead(1, bus=bus)
    called: list[int] = []
    guarded = bh(called.append)
    with capture_events(BulkheadRejected, bus=bus) as events, bh, pytest.raises(BulkheadFullError):
        guarded(1)
    assert (called, bh.in_use) == ([], 0)
    assert [(type(e), e.operation) for e in events] == [(BulkheadRejected, "list.append")]


def test_a_sync_waiter_times_out_in_virtual_time(clock: FakeClock, threads: list[Worker]) -> None:
    """A thread queued with queue_timeout is woken and rejected when the fake clock passes it."""
    bh = bulkhead(1, max_queue=1, queue_timeout=5, clock=clock)
    called: list[int] = []
    guarded = bh(called.append)
    with bh:
        waiter = spawn(threads, lambda: guarded(1))
        wait_until(lambda: bh.queued == 1)
        clock.advance(4.9)
        assert waiter.is_alive()
        clock.advance(0.1)
        waiter.join()
        assert isinstance(waiter.error, BulkheadFullError)
    assert (called, bh.queued, bh.in_use) == ([], 0, 0)


class JumpClock:
    """A clock with no timers that jumps 10 s on every reading: a queue wait runs out at once."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        self.now += 10
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_sync_wait_is_measured_against_the_clock() -> None:
    """Without clock timers, a thread's wait ends when the clock says queue_timeout has passed."""
    bh = bulkhead(1, max_queue=1, queue_timeout=5, clock=JumpClock())
    with bh:
        with pytest.raises(BulkheadFullError, match="after waiting 5s"):
            bh.call(int)
        assert bh.queued == 0
    assert bh.in_use == 0


class LoopTimerClock(JumpClock):
    """A jumping clock whose timers need a running event loop, as the system clock's do."""

    def call_later(self, delay: float, callback: Any) -> Any:
        raise RuntimeError("no running event loop")


def test_a_thread_falls_back_to_a_measured_wait_when_timers_need_a_loop() -> None:
    """A clock whose timers cannot run in a thread still bounds the thread's wait."""
    bh = bulkhead(1, max_queue=1, queue_timeout=5, clock=LoopTimerClock())
    with bh:
        with pytest.raises(BulkheadFullError):
            bh.call(int)
        assert bh.queued == 0
    assert bh.in_use == 0


@pytest.mark.parametrize("exc_type", [ValueError, KeyboardInterrupt, SystemExit])
def test_a_sync_exception_releases_the_slot(exc_type: type[BaseException]) -> None:
    """Any exception from a sync function, control flow included, propagates unchanged and frees the slot."""
    bh = bulkhead(1)
    exc = exc_type()

    def fail() -> None:
        raise exc

    with pytest.raises(exc_type) as info:
        bh.call(fail)
    assert (info.value, bh.in_use) == (exc, 0)


class ExplodingClock(FakeClock):
    """A clock whose timers raise KeyboardInterrupt when armed (an interrupt while queueing)."""

    def call_later(self, delay: float, callback: Any) -> Any:
        raise KeyboardInterrupt


def test_an_interrupt_while_queued_leaves_the_queue() -> None:
    """A KeyboardInterrupt while a thread waits in the queue removes its place."""
    bh = bulkhead(1, max_queue=1, queue_timeout=1, clock=ExplodingClock())
    with bh:
        with pytest.raises(KeyboardInterrupt):
            bh.call(int)
        assert (bh.queued, bh.in_use) == (0, 1)
    assert bh.in_use == 0


def test_with_form_holds_a_slot(threads: list[Worker]) -> None:
    """`with bulkhead:` holds a slot for the block and a blocked thread enters after it."""
    bh = bulkhead(1, max_queue=1)
    entered = threading.Event()

    def enter() -> None:
        with bh:
            entered.set()

    with bh:
        assert bh.in_use == 1
        spawn(threads, enter)
        wait_until(lambda: bh.queued == 1)
        assert not entered.is_set()
    threads[0].join()
    assert (entered.is_set(), bh.in_use) == (True, 0)


async def test_a_thread_releasing_wakes_a_coroutine(threads: list[Worker]) -> None:
    """A slot released by a thread is handed to a coroutine queued on an event loop."""
    bh = bulkhead(1, max_queue=1)
    inside = threading.Event()
    gate = threading.Event()

    def hold() -> None:
        with bh:
            inside.set()
            gate.wait()

    holder = spawn(threads, hold)
    await asyncio.to_thread(inside.wait)

    async def answer() -> int:
        return 42

    task = asyncio.create_task(bh.call(answer))
    while bh.queued == 0:
        await asyncio.sleep(0)
    gate.set()
    assert await task == 42
    await asyncio.to_thread(holder.join)
    assert bh.in_use == 0


async def test_a_coroutine_releasing_wakes_a_thread(threads: list[Worker]) -> None:
    """A slot released by a coroutine is handed to a thread blocked in the queue."""
    bh: Bulkhead = bulkhead(1, max_queue=1)
    async with bh:
        waiter = spawn(threads, lambda: bh.call(int, "7"))
        await asyncio.to_thread(wait_until, lambda: bh.queued == 1)
    await asyncio.to_thread(waiter.join)
    assert (waiter.result, waiter.error, bh.in_use) == (7, None, 0)
