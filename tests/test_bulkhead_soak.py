"""Soak and property tests of ``bulkhead``: invariants under random load and cancellation."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilient import Bulkhead, BulkheadFullError, bulkhead
from resilient.testing import FakeClock


def check_invariants(bh: Bulkhead) -> None:
    """The bounds a bulkhead must keep at every instant."""
    assert 0 <= bh.in_use <= bh.max_concurrent
    assert 0 <= bh.queued <= bh.max_queue
    # Slots are handed over, never left free while someone waits.
    assert bh.queued == 0 or bh.in_use == bh.max_concurrent


async def soak(seed: int, steps: int) -> dict[str, int]:
    """Drive one bulkhead with random calls, cancellations and clock jumps; return outcome counts."""
    rng = random.Random(seed)
    clock = FakeClock()
    bh = bulkhead(3, max_queue=5, queue_timeout=rng.choice([None, 1.0]), clock=clock)
    running = 0

    async def work(yields: int) -> str:
        nonlocal running
        running += 1
        try:
            assert running <= bh.max_concurrent
            for _ in range(yields):
                await asyncio.sleep(0)
        finally:
            running -= 1
        return "ok"

    async def block(yields: int) -> str:
        async with bh:
            return await work(yields)

    tasks: list[asyncio.Task[str]] = []
    for _ in range(steps):
        roll = rng.random()
        if roll < 0.45:
            tasks.append(asyncio.create_task(bh.call(work, rng.randrange(40))))
        elif roll < 0.55:
            tasks.append(asyncio.create_task(block(rng.randrange(40))))
        elif roll < 0.75 and tasks:
            # Recent tasks are the ones likely still queued or running.
            rng.choice(tasks[-12:]).cancel()
        elif roll < 0.85:
            clock.advance(rng.uniform(0, 0.6))
        for _ in range(rng.randrange(2)):
            await asyncio.sleep(0)
        check_invariants(bh)
        assert len(bh._queue) <= 2 * bh.max_queue + 33  # dead entries are compacted
    clock.advance(10)
    outcomes = dict.fromkeys(("ok", "cancelled", "rejected"), 0)
    for result in await asyncio.gather(*tasks, return_exceptions=True):
        if result == "ok":
            outcomes["ok"] += 1
        elif isinstance(result, asyncio.CancelledError):
            outcomes["cancelled"] += 1
        else:
            assert isinstance(result, BulkheadFullError)
            outcomes["rejected"] += 1
    assert (bh.in_use, bh.queued, running) == (0, 0, 0)
    return outcomes


@pytest.mark.parametrize("seed", range(8))
async def test_soak_with_random_cancellations_keeps_the_invariants(seed: int) -> None:
    """Random calls, cancellations and queue timeouts never break the bounds nor leak a slot."""
    outcomes = await soak(seed, steps=400)
    # The run exercised every path, so the final zero counts mean something.
    assert all(outcomes.values()), outcomes


@settings(max_examples=60, deadline=None)
@given(
    max_concurrent=st.integers(min_value=1, max_value=5),
    max_queue=st.integers(min_value=0, max_value=5),
    callers=st.integers(min_value=0, max_value=14),
)
def test_capacity_property(max_concurrent: int, max_queue: int, callers: int) -> None:
    """Simultaneous callers split into running, queued (FIFO) and rejected exactly by the limits."""

    async def scenario() -> None:
        bh = bulkhead(max_concurrent, max_queue=max_queue)
        gate = asyncio.Event()
        started: list[int] = []

        async def work(i: int) -> int:
            started.append(i)
            await gate.wait()
            return i

        tasks = [asyncio.create_task(bh.call(work, i)) for i in range(callers)]
        for _ in range(5):
            await asyncio.sleep(0)
        running = min(callers, max_concurrent)
        queued = min(callers - running, max_queue)
        assert (bh.in_use, bh.queued) == (running, queued)
        assert started == list(range(running))
        gate.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        admitted = running + queued
        assert results[:admitted] == list(range(admitted))
        assert all(isinstance(r, BulkheadFullError) for r in results[admitted:])
        assert started == list(range(admitted))
        assert (bh.in_use, bh.queued) == (0, 0)

    asyncio.run(scenario())
