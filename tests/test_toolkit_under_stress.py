"""The issue 12 toolkit under attack: interrupted at every await point (cancel(), asyncio.timeout, TaskGroup).

Each scenario runs a few concurrent calls through one of the new policies
(the rate limiter's wait queue, a hedged race, ``gather_outcomes``, ``outcome``
over a retry, a gated pipeline of every policy) on a virtual clock that only
the test moves. The first call is interrupted after *k* steps of the event
loop, for every *k* until the calls are done before the interruption. After
each run: the interruption propagated as itself, every other call finished
normally, no task was left behind, the event loop logged nothing, and no
policy holds a slot, a permit, a queued waiter or a call in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import pytest

from resilient import (
    CircuitState,
    Outcome,
    bulkhead,
    circuit_breaker,
    gate,
    gather_outcomes,
    hedge,
    outcome,
    pipeline,
    rate_limiter,
    retry,
    timeout,
)
from resilient.testing import FakeClock

STEPS = 30  # loop iterations before the interruption: every scenario is over well before


@dataclass
class Scenario:
    """Calls to run concurrently, and what must hold once they are all over."""

    call: Callable[[int], Coroutine[Any, Any, Any]]
    leftovers: Callable[[], dict[str, object]]
    starts: list[float] = field(default_factory=list)


async def steps(n: int) -> None:
    """Yield to the event loop *n* times (an await point each)."""
    for _ in range(n):
        await asyncio.sleep(0)


def limiter_queue(clock: FakeClock) -> Scenario:
    """Four calls through a one-permit-per-second limiter that lets them wait: a FIFO queue."""
    limiter = rate_limiter(1, burst=1, max_wait=100, clock=clock)
    scenario = Scenario(lambda i: work(i), lambda: {"queued": limiter.queued})

    @limiter
    async def work(i: int) -> int:
        scenario.starts.append(clock.monotonic())
        await steps(3)
        return i

    return scenario


def hedged_race(clock: FakeClock) -> Scenario:
    """Calls hedged three ways, attempts sleeping on the clock and cleaning up with awaits.

    However a call ends, none of its attempts may still be running.
    """
    alive: dict[int, int] = {}
    outlived: list[int] = []

    @hedge(attempts=3, delay=0.1, clock=clock)
    async def attempt(i: int) -> int:
        alive[i] = alive.get(i, 0) + 1
        try:
            try:
                await steps(2)
                await clock.sleep(0.3)
            finally:
                await steps(2)  # cleanup with await points (a cancellation may land here too)
        finally:
            alive[i] -= 1
        return i

    async def work(i: int) -> int:
        try:
            return await attempt(i)
        finally:
            if alive.get(i):
                outlived.append(i)

    return Scenario(work, lambda: {"attempts outliving their call": outlived})


def fan_out(clock: FakeClock) -> Scenario:
    """gather_outcomes of children that sleep, fail and clean up."""

    async def child(n: int) -> int:
        try:
            await steps(n)
            await clock.sleep(0.1 * n)
        finally:
            await steps(1)
        if n == 2:
            raise ValueError(n)
        return n

    async def work(i: int) -> tuple[Outcome[int], ...]:
        return await gather_outcomes(*(child(n) for n in range(4)))

    return Scenario(work, dict)


def outcome_of_a_retry(clock: FakeClock) -> Scenario:
    """outcome() of a call that retries with backoff waits on the clock, and fails."""

    @retry(attempts=3, backoff=0.1, clock=clock)
    async def flaky() -> None:
        await clock.sleep(0.05)
        raise ConnectionError

    async def work(i: int) -> Outcome[None]:
        return await outcome(flaky())

    return Scenario(work, dict)


def gated_pipeline(clock: FakeClock) -> Scenario:
    """gate > timeout > retry > circuit_breaker > rate_limiter > bulkhead, on every call."""
    g = gate(clock=clock)
    breaker = circuit_breaker(failure_threshold=1, clock=clock)
    limiter = rate_limiter(5, burst=1, max_wait=10, clock=clock)
    pool = bulkhead(1, max_queue=5, clock=clock)

    @pipeline(g, timeout(5, clock=clock), retry(attempts=3, backoff=0.1, clock=clock), breaker, limiter, pool)
    async def work(i: int) -> int:
        await steps(2)
        await clock.sleep(0.1)
        return i

    def leftovers() -> dict[str, object]:
        return {
            "gate": g.in_flight,
            "bulkhead": pool.in_use + pool.queued,
            "limiter": limiter.queued,
            "breaker": None if breaker.state is CircuitState.CLOSED else breaker.state,
        }

    return Scenario(work, leftovers)


SCENARIOS: dict[str, Callable[[FakeClock], Scenario]] = {
    "rate_limiter": limiter_queue,
    "hedge": hedged_race,
    "gather_outcomes": fan_out,
    "outcome": outcome_of_a_retry,
    "gated_pipeline": gated_pipeline,
}


class Boom(Exception):
    """The sibling failure that makes a TaskGroup cancel the others."""


async def wander(k: int, clock: FakeClock) -> None:
    """Let the loop run *k* steps, moving the clock now and then."""
    for i in range(k):
        await asyncio.sleep(0)
        if i % 3 == 2:
            clock.advance(0.05)


async def run_interrupted(how: str, make: Callable[[FakeClock], Scenario], k: int, clock: FakeClock) -> None:
    """Run three calls of a fresh scenario, the first interrupted after *k* steps; check the aftermath."""
    scenario = make(clock)
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    async def first_call() -> Any:
        if how != "timeout":
            return await scenario.call(0)
        async with asyncio.timeout(None) as cm:

            async def expire() -> None:
                await wander(k, clock)
                cm.reschedule(loop.time())  # expires at the next step of the loop

            expiry = asyncio.create_task(expire())
            try:
                return await scenario.call(0)
            finally:
                expiry.cancel()

    async def drive() -> None:
        while not done.is_set():
            clock.advance(0.05)
            await steps(3)

    async def calls() -> list[Any] | None:
        if how == "taskgroup":

            async def sibling() -> None:
                await wander(k, clock)
                raise Boom

            async def group() -> None:
                async with asyncio.TaskGroup() as tg:
                    for i in (1, 2):
                        tg.create_task(scenario.call(i))
                    tg.create_task(first_call())
                    tg.create_task(sibling())

            # Every call is cancelled when the sibling fails: what is left behind is the point.
            with pytest.raises(ExceptionGroup) as info:
                await group()
            assert [type(e) for e in info.value.exceptions] == [Boom]
            return None
        tasks = [asyncio.create_task(first_call())] + [asyncio.create_task(scenario.call(i)) for i in (1, 2)]
        await wander(k, clock)
        if how == "cancel":
            tasks[0].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    driver = asyncio.create_task(drive())
    try:
        got = await calls()
    finally:
        done.set()
        await driver
    if got is not None:
        head, *rest = got
        expected = asyncio.CancelledError if how == "cancel" else TimeoutError
        assert isinstance(head, expected) or not isinstance(head, BaseException), head
        assert not any(isinstance(r, BaseException) for r in rest), rest
    await steps(5)
    left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert left == [], left
    assert {key: v for key, v in scenario.leftovers().items() if v} == {}
    if scenario.starts:  # the limiter: whoever started, started one interval after the one before
        gaps = [round(b - a, 9) for a, b in zip(scenario.starts, scenario.starts[1:], strict=False)]
        assert all(gap >= 1.0 for gap in gaps), gaps


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """What the running loop's exception handler was asked to log during the test."""
    seen: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: seen.append(context))
    yield seen
    loop.set_exception_handler(None)


@pytest.mark.parametrize("name", list(SCENARIOS))
@pytest.mark.parametrize("how", ["cancel", "timeout", "taskgroup"])
async def test_interrupted_at_every_await_point_leaks_nothing(
    name: str, how: str, loop_errors: list[dict[str, Any]]
) -> None:
    """One call interrupted anywhere: the others' results stand; no task, slot, permit or error log left"""
    for k in range(STEPS):
        await run_interrupted(how, SCENARIOS[name], k, FakeClock())
    assert loop_errors == []
