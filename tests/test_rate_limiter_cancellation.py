"""Adversarial cancellation of ``rate_limiter`` waiters: reservations come back, nobody is delayed by them.

Time is a ``manual_clock`` (sleeping on it waits until the test advances
it), so a test decides exactly when each waiter's permit comes due.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from resilient import RateLimiter, rate_limiter
from resilient._gcra import AsyncWaiter, SyncWaiter
from resilient.testing import FakeClock

EPS = 1e-6


async def settle() -> None:
    """Let every ready task run until the loop is idle (no real waiting)."""
    for _ in range(20):
        await asyncio.sleep(0)


class Calls:
    """Calls through one limiter that record when (virtual time) and in what order they ran."""

    def __init__(self, limiter: RateLimiter, clock: FakeClock) -> None:
        self.limiter = limiter
        self.clock = clock
        self.ran: list[tuple[int, float]] = []

    async def work(self, i: int) -> float:
        now = self.clock.monotonic()
        self.ran.append((i, now))
        return now

    def spawn(self, i: int) -> asyncio.Task[float]:
        return asyncio.create_task(self.limiter.call(self.work, i))

    async def advance(self, seconds: float, step: float = 0.25) -> None:
        """Move time in steps of about *step*, letting due waiters run at each."""
        steps = max(1, round(seconds / step))
        for _ in range(steps):
            self.clock.advance(seconds / steps + 1e-9)
            await settle()

    def times(self) -> dict[int, float]:
        return dict(self.ran)


async def finish(*tasks: asyncio.Task[float]) -> list[object]:
    """Wait for *tasks* (a stranded waiter fails the test after 10 real seconds instead of hanging)."""
    return await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)


def conformant(times: list[float], burst: int, interval: float) -> bool:
    """True if no k > burst consecutive admissions span less than (k - burst) intervals."""
    times = sorted(times)
    for i in range(len(times)):
        for j in range(i + burst, len(times)):
            if times[j] - times[i] < (j - i + 1 - burst) * interval - EPS:
                return False
    return True


async def test_cancelling_the_head_moves_the_next_waiter_into_its_slot(manual_clock: FakeClock) -> None:
    """The first waiter, cancelled while it sleeps, hands its slot to the one behind it."""
    c = Calls(rate_limiter(1, burst=1, max_wait=10, clock=manual_clock), manual_clock)
    c.spawn(0)
    waiters = [c.spawn(i) for i in (1, 2, 3)]
    await settle()
    assert c.limiter.queued == 3
    waiters[0].cancel()
    await settle()
    assert waiters[0].cancelled()
    assert c.limiter.queued == 2
    late = c.spawn(4)
    await c.advance(3)
    await finish(*waiters[1:], late)
    assert c.times() == {0: 0.0, 2: pytest.approx(1), 3: pytest.approx(2), 4: pytest.approx(3)}


async def test_cancelling_a_middle_waiter_moves_the_later_ones_up(manual_clock: FakeClock) -> None:
    """A waiter cancelled in the middle of the queue gives its slot back: those behind run earlier."""
    c = Calls(rate_limiter(1, burst=1, max_wait=10, clock=manual_clock), manual_clock)
    c.spawn(0)
    waiters = [c.spawn(i) for i in (1, 2, 3, 4)]
    await settle()
    waiters[1].cancel()
    waiters[2].cancel()
    await settle()
    assert (c.limiter.queued, c.limiter.available) == (2, 0)
    await c.advance(2)
    await finish(waiters[0], waiters[3])
    assert c.times() == {0: 0.0, 1: pytest.approx(1), 4: pytest.approx(2)}


async def test_cancelling_every_waiter_leaves_the_limiter_as_before(manual_clock: FakeClock) -> None:
    """After every waiter is cancelled the next call gets the permit it would have had anyway."""
    rl = rate_limiter(2, burst=1, max_wait=10, clock=manual_clock)
    c = Calls(rl, manual_clock)
    await c.spawn(0)
    waiters = [c.spawn(i) for i in range(1, 6)]
    await settle()
    for w in reversed(waiters):
        w.cancel()
    await settle()
    assert (rl.queued, rl.available) == (0, 0)
    assert all(w.cancelled() for w in waiters)
    nxt = c.spawn(9)
    await c.advance(0.5)
    assert await finish(nxt) == [pytest.approx(0.5)]


async def test_a_waiter_cancelled_as_it_becomes_the_head_passes_its_turn_on(manual_clock: FakeClock) -> None:
    """A waiter told it is first, then cancelled before it resumes, does not strand the queue."""
    c = Calls(rate_limiter(1, burst=1, max_wait=10, clock=manual_clock), manual_clock)
    c.spawn(0)
    waiters = [c.spawn(i) for i in (1, 2, 3)]
    await settle()
    manual_clock.advance(1)
    while c.limiter.queued == 3:  # until the head is admitted (and the next one told)
        await asyncio.sleep(0)
    waiters[1].cancel()  # told it is the head, not yet resumed
    await c.advance(1)
    await finish(waiters[0], waiters[2])
    assert waiters[1].cancelled()
    assert c.times() == {0: 0.0, 1: 1.0, 3: pytest.approx(2)}


async def test_a_cancelled_waiter_raises_cancelled_error_unchanged(manual_clock: FakeClock) -> None:
    """Cancelling a waiting call propagates CancelledError (never a rejection or a swallow)."""
    c = Calls(rate_limiter(1, burst=1, max_wait=10, clock=manual_clock), manual_clock)
    await c.spawn(0)
    w = c.spawn(1)
    await settle()
    w.cancel("stop")
    with pytest.raises(asyncio.CancelledError, match="stop"):
        await w
    assert c.limiter.queued == 0


async def test_a_call_cancelled_while_running_keeps_its_permit_spent(manual_clock: FakeClock) -> None:
    """A permit is spent when the call starts: cancelling the running call gives nothing back."""
    rl = rate_limiter(1, burst=1, clock=manual_clock)
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(rl.call(hang))
    await started.wait()
    task.cancel()
    await settle()
    assert task.cancelled()
    assert rl.available == 0


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_an_interrupt_while_waiting_returns_the_reservation(exc_type: type[BaseException]) -> None:
    """A KeyboardInterrupt in a sync waiter's sleep propagates as is and gives its reservation back."""
    raised = exc_type()

    class Interrupting(FakeClock):
        def sleep_blocking(self, seconds: float) -> None:
            raise raised

    clock = Interrupting()
    rl = rate_limiter(1, burst=1, max_wait=5, clock=clock)
    with rl:
        pass
    with pytest.raises(exc_type) as info, rl:
        pass
    assert info.value is raised
    assert rl.queued == 0
    clock.advance(1)
    assert rl.available == 1


async def test_an_interrupt_in_an_async_waiters_sleep_returns_the_reservation() -> None:
    """A KeyboardInterrupt raised from the clock's sleep propagates and the next call is not delayed."""

    class Interrupting(FakeClock):
        async def sleep(self, seconds: float) -> None:
            raise KeyboardInterrupt

    clock = Interrupting()
    rl = rate_limiter(1, burst=1, max_wait=5, clock=clock)
    async with rl:
        pass
    with pytest.raises(KeyboardInterrupt):
        async with rl:
            pass
    clock.advance(1)
    assert (rl.queued, rl.available) == (0, 1)


async def test_waiters_leaving_from_the_middle_do_not_accumulate(manual_clock: FakeClock) -> None:
    """Many waiters cancelled behind the head are dropped from the queue, not kept as dead weight."""
    c = Calls(rate_limiter(100, burst=1, max_wait=10, clock=manual_clock), manual_clock)
    c.spawn(0)
    tasks = [c.spawn(i) for i in range(1, 201)]
    await settle()
    for t in tasks[1:-1]:
        t.cancel()
    await settle()
    assert c.limiter.queued == 2
    assert len(c.limiter._gcra.queue) < 40
    await c.advance(0.02, step=0.01)
    await finish(tasks[0], tasks[-1])
    assert c.times() == {0: 0.0, 1: pytest.approx(0.01), 200: pytest.approx(0.02)}


def test_abandoning_an_admitted_waiter_changes_nothing(manual_clock: FakeClock) -> None:
    """A waiter that already got its permit cannot give it back (an interrupt after admission)."""
    rl = rate_limiter(1, burst=1, max_wait=10, clock=manual_clock)
    with rl:
        pass
    w = rl._take_local(SyncWaiter)
    manual_clock.advance(1)
    rl._gcra.wait_sync(w)  # its time has come: admitted without sleeping
    rl._gcra.abandon(w)
    assert (rl.queued, rl.available) == (0, 0)


def test_a_waiter_whose_loop_closed_is_skipped(manual_clock: FakeClock) -> None:
    """The head's turn is not handed to a waiter whose event loop has closed: the next one gets it."""
    rl = rate_limiter(1, burst=1, max_wait=10, clock=manual_clock)
    with rl:
        pass
    loop = asyncio.new_event_loop()

    async def join_queue() -> Any:
        return rl._take_local(AsyncWaiter)

    first = asyncio.run(join_queue())  # the head
    stranded = loop.run_until_complete(join_queue())
    loop.close()
    assert rl.queued == 2
    rl._gcra.abandon(first)  # the head leaves: its turn cannot reach the closed loop's waiter
    assert rl.queued == 0
    manual_clock.advance(1)
    assert rl.available == 1  # both reservations came back
    assert stranded.head


@pytest.mark.parametrize("seed", range(12))
async def test_survivors_run_on_the_schedule_as_if_the_cancelled_never_came(
    seed: int, manual_clock: FakeClock
) -> None:
    """Cancelling a random subset of waiters up front leaves the rest on an unbroken GCRA schedule."""
    rnd = random.Random(seed)
    burst = rnd.randint(1, 3)
    c = Calls(rate_limiter(4, burst=burst, max_wait=100, clock=manual_clock), manual_clock)
    tasks = [c.spawn(i) for i in range(20)]
    await settle()
    doomed = set(rnd.sample(range(burst, 20), rnd.randint(1, 12)))
    for i in doomed:
        tasks[i].cancel()
    await settle()
    await c.advance(6)
    survivors = [i for i in range(20) if i not in doomed]
    await finish(*(tasks[i] for i in survivors))
    expected = [max(0, k - burst + 1) * 0.25 for k in range(len(survivors))]
    assert [i for i, _ in c.ran] == survivors  # FIFO
    assert [t for _, t in c.ran] == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("seed", range(25))
async def test_random_cancellations_never_break_the_limit_or_the_order(
    seed: int, manual_clock: FakeClock
) -> None:
    """Seeded torture: cancellations at random moments while time moves; the limit and FIFO hold."""
    rnd = random.Random(seed)
    burst, rate = rnd.randint(1, 4), rnd.choice([2.0, 5.0, 10.0])
    rl = rate_limiter(rate, burst=burst, max_wait=1000, clock=manual_clock)
    c = Calls(rl, manual_clock)
    tasks: list[asyncio.Task[float]] = []
    for _ in range(40):
        action = rnd.random()
        if action < 0.45:
            tasks.append(c.spawn(len(tasks)))
        elif action < 0.7 and tasks:
            rnd.choice(tasks).cancel()
        else:
            manual_clock.advance(rnd.uniform(0, 2.5 / rate))
        for _ in range(rnd.randint(0, 3)):
            await asyncio.sleep(0)
    await settle()
    await c.advance(len(tasks) / rate + 1)
    results = await finish(*tasks)
    done = [i for i, r in enumerate(results) if not isinstance(r, BaseException)]
    assert all(isinstance(r, asyncio.CancelledError) for r in results if isinstance(r, BaseException))
    assert sorted(i for i, _ in c.ran) == done
    assert [i for i, _ in c.ran] == done  # FIFO among those that ran
    assert conformant([t for _, t in c.ran], burst, 1 / rate)
    assert (rl.queued, len(rl._gcra.queue)) == (0, 0)
