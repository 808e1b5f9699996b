"""Tests of ``rate_limiter`` with sync functions, real threads and several event loops (no real sleeping)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable

import pytest

from resilient import RateLimitedError, rate_limiter
from resilient.testing import FakeClock


def run_threads(n: int, target: Callable[[int], object]) -> list[BaseException]:
    """Run *target(i)* in *n* threads released together by a barrier; return what they raised."""
    barrier, errors = threading.Barrier(n, timeout=10), list[BaseException]()

    def body(i: int) -> None:
        try:
            barrier.wait()
            target(i)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    return errors


def wait_for(predicate: Callable[[], bool]) -> None:
    """Yield the CPU until *predicate* holds (the deadline only guards against a hang)."""
    guard = time.monotonic() + 30
    while not predicate():
        assert time.monotonic() < guard, "condition never became true"
        os.sched_yield()


def test_racing_threads_never_take_more_than_the_burst(clock: FakeClock) -> None:
    """Threads hammering a limiter at one instant get exactly `burst` permits between them."""
    rl = rate_limiter(10, burst=7, clock=clock)
    admitted: list[int] = []
    lock = threading.Lock()

    @rl
    def work(i: int) -> None:
        with lock:
            admitted.append(i)

    def hammer(i: int) -> None:
        for _ in range(200):
            try:
                work(i)
            except RateLimitedError:
                pass

    assert run_threads(8, hammer) == []
    assert len(admitted) == 7


def test_waiting_threads_run_one_interval_apart(clock: FakeClock) -> None:
    """Threads waiting for permits (sleeping on the clock) are admitted on the rate's schedule."""
    rl = rate_limiter(1, burst=2, max_wait=1000, clock=clock)
    times: list[float] = []
    lock = threading.Lock()

    @rl
    def work() -> None:
        with lock:
            times.append(clock.monotonic())

    def calls(i: int) -> None:
        for _ in range(5):
            work()

    assert run_threads(8, calls) == []
    assert sorted(times) == [0.0, 0.0, *(float(t) for t in range(1, 39))]
    assert rl.queued == 0


def test_a_thread_blocks_until_its_permit_then_hands_over(manual_clock: FakeClock) -> None:
    """A waiting thread blocks until virtual time reaches its permit, then the next thread's turn starts."""
    rl = rate_limiter(1, burst=1, max_wait=10, clock=manual_clock)
    with rl:
        pass
    times: dict[str, float] = {}

    def call(label: str) -> None:
        with rl:
            times[label] = manual_clock.monotonic()

    first = threading.Thread(target=call, args=("first",))
    first.start()
    wait_for(lambda: rl.queued == 1)
    second = threading.Thread(target=call, args=("second",))
    second.start()
    wait_for(lambda: rl.queued == 2)
    manual_clock.advance(1)
    first.join(30)
    wait_for(lambda: bool(manual_clock._timers))  # the second now sleeps as the head
    manual_clock.advance(1)
    second.join(30)
    assert times == {"first": 1.0, "second": 2.0}


def test_coroutines_on_two_loops_share_one_queue(clock: FakeClock) -> None:
    """Waiters on two event loops (two threads) are admitted on one schedule, handing over across loops."""
    rl = rate_limiter(2, burst=1, max_wait=1000, clock=clock)
    times: list[float] = []
    lock = threading.Lock()

    @rl
    async def work() -> None:
        with lock:
            times.append(clock.monotonic())

    async def many() -> None:
        await asyncio.gather(*(work() for _ in range(10)))

    assert run_threads(2, lambda i: asyncio.run(many())) == []
    assert sorted(times) == [t / 2 for t in range(20)]
    assert rl.queued == 0


def test_threads_and_coroutines_share_one_queue(clock: FakeClock) -> None:
    """A sync thread and coroutines wait in the same FIFO queue and hand their turns to each other."""
    rl = rate_limiter(1, burst=1, max_wait=1000, clock=clock)
    times: list[float] = []
    lock = threading.Lock()

    def record() -> None:
        with lock:
            times.append(clock.monotonic())

    async def coroutines() -> None:
        async def one() -> None:
            async with rl:
                record()

        await asyncio.gather(*(one() for _ in range(6)))

    def target(i: int) -> None:
        if i == 0:
            asyncio.run(coroutines())
        else:
            for _ in range(6):
                with rl:
                    record()

    assert run_threads(2, target) == []
    assert sorted(times) == [float(t) for t in range(12)]


def test_a_thread_hands_its_turn_to_a_coroutine_on_another_loop(manual_clock: FakeClock) -> None:
    """The head waiting on one event loop, once admitted, wakes the next waiter on another loop."""
    rl = rate_limiter(1, burst=1, max_wait=10, clock=manual_clock)
    with rl:
        pass
    times: dict[str, float] = {}

    async def work(label: str) -> None:
        times[label] = manual_clock.monotonic()

    other = threading.Thread(target=lambda: asyncio.run(rl.call(work, "other loop")))
    other.start()
    wait_for(lambda: bool(manual_clock._timers))  # the other loop's waiter sleeps as the head

    async def here() -> None:
        task = asyncio.create_task(rl.call(work, "this loop"))
        await asyncio.sleep(0)
        assert rl.queued == 2
        manual_clock.advance(1)
        while not manual_clock._timers:  # until woken across loops, it sleeps as the head
            await asyncio.sleep(0)
        manual_clock.advance(1)
        await task

    asyncio.run(here())
    other.join(30)
    assert times == {"other loop": 1.0, "this loop": 2.0}


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_permit_taken_while_a_thread_waits_for_the_lock_is_not_taken_twice(flavour: str) -> None:
    """A thread that read the state, then waited for the lock while another took the permit, decides again."""
    read = threading.Event()

    class Signalling(FakeClock):
        def monotonic(self) -> float:
            read.set()  # the caller reads the state next, then takes the lock
            return super().monotonic()

    clock = Signalling()
    rl = rate_limiter(1, burst=1, clock=clock)
    outcome: list[object] = []

    @rl
    def admitted() -> None:
        outcome.append("admitted")

    @rl
    async def admitted_async() -> None:
        outcome.append("admitted")

    def call() -> None:
        try:
            admitted() if flavour == "sync" else asyncio.run(admitted_async())
        except RateLimitedError as exc:
            outcome.append(exc.retry_after)

    g = rl._gcra
    g.lock.acquire()
    thread = threading.Thread(target=call)
    thread.start()
    assert read.wait(30)
    g.tat = clock.monotonic() + 1.0  # meanwhile another caller took the only permit
    g.lock.release()
    thread.join(30)
    assert outcome == [1.0]
