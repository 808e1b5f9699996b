"""Hedging: cut the tail latency of a replicated read.

A search service has replicas that usually answer in 5 ms, but one request
in twenty hits a replica that stalls for 150 ms (a GC pause, a cold cache).
The same 400 requests are sent plainly, then through
``hedge(delay=0.02)``: a request with no answer after 20 ms is sent again,
to another replica, and the first answer wins. The slow attempt is
cancelled, and awaited, before the call returns.

The hedged run's p99 drops from the stall to about the delay plus one fast
answer, for a few percent more requests; a ``RetryBudget`` would cap that
extra load if the dependency itself slowed down. Real time, about a second;
exits 0.

    python examples/hedging.py
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable

from resilient import RetryBudget, current_call, hedge
from resilient.events import HedgeStarted
from resilient.testing import capture_events

FAST, STALL, STALL_RATE = 0.005, 0.150, 0.05
REQUESTS, CONCURRENCY = 400, 40


class Replicas:
    """A replicated dependency: mostly fast, sometimes stalled. Counts requests and cancellations."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.requests = 0
        self.cancelled = 0

    async def search(self, query: str) -> str:
        """One request to some replica."""
        self.requests += 1
        stalled = self.random.random() < STALL_RATE
        try:
            await asyncio.sleep(STALL if stalled else FAST)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        ctx = current_call()
        attempt = ctx.attempt if ctx is not None else 1
        return f"{query}: found (attempt {attempt})"


async def measure(call: Callable[[str], Awaitable[str]]) -> list[float]:
    """Latencies (seconds) of REQUESTS calls, CONCURRENCY at a time."""
    gate = asyncio.Semaphore(CONCURRENCY)
    latencies: list[float] = []

    async def one(i: int) -> None:
        async with gate:
            start = time.perf_counter()
            await call(f"query {i}")
            latencies.append(time.perf_counter() - start)

    await asyncio.gather(*(one(i) for i in range(REQUESTS)))
    return latencies


def p(latencies: list[float], q: int) -> str:
    """The q-th percentile, in milliseconds."""
    return f"{statistics.quantiles(latencies, n=100)[q - 1] * 1000:6.1f} ms"


async def main() -> None:
    plain = Replicas(seed=1)
    plain_latencies = await measure(plain.search)

    hedged = Replicas(seed=1)
    budget = RetryBudget(ratio=0.2)  # at most one extra request per five calls, plus a floor
    search = hedge(delay=0.020, budget=budget, name="search")(hedged.search)
    with capture_events() as events:
        hedged_latencies = await measure(search)
    hedges = [e for e in events if isinstance(e, HedgeStarted)]

    print(f"{REQUESTS} requests, {STALL_RATE:.0%} of replica answers stall for {STALL * 1000:.0f} ms\n")
    print("              p50        p95        p99        requests sent")
    for label, latencies, sent in (
        ("plain ", plain_latencies, f"{plain.requests}"),
        (
            "hedged",
            hedged_latencies,
            f"{hedged.requests} ({len(hedges)} hedges, {hedged.cancelled} losers cancelled)",
        ),
    ):
        print(f"{label}    {p(latencies, 50)}  {p(latencies, 95)}  {p(latencies, 99)}  {sent}")

    # A hedge whose first attempt answers before the new one runs never sends its request.
    assert REQUESTS <= hedged.requests <= REQUESTS + len(hedges)
    assert hedged.cancelled <= len(hedges)  # losers were cancelled...
    assert not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]  # ...and none is left


if __name__ == "__main__":
    asyncio.run(main())
