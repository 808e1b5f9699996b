"""Write your own event subscriber: a small in-process health report.

Policies emit frozen dataclass events on a bus. This example subscribes a
sync handler (runs inline, once per event) that keeps per-operation counters,
and an async handler (run as a task the bus holds; ``await bus.drain()``
waits for it) that ships selected events somewhere slow. It uses its own
``EventBus`` so nothing else sees these events, and a ``FakeClock`` so the
backoff waits take no real time. Exits 0.

    python examples/custom_subscriber.py
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict

import resilient
from resilient import EventBus, backoff, fallback, pipeline, retry, timeout
from resilient.events import (
    CallFailed,
    CallSucceeded,
    Event,
    FallbackUsed,
    RetriesExhausted,
    RetryScheduled,
    TimeoutElapsed,
)
from resilient.testing import FakeClock

bus = EventBus()  # a private bus; policies not given bus= use resilient.events.default_bus
clock = FakeClock()


class HealthReport:
    """Counts what each operation went through. A sync handler: keep it cheap."""

    def __init__(self) -> None:
        self.counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.slowest: dict[str, float] = {}

    def __call__(self, event: Event) -> None:
        op = event.operation or "<block>"
        self.counts[op][type(event).__name__] += 1
        if isinstance(event, (CallSucceeded, CallFailed)):  # once per call, not per attempt
            self.slowest[op] = max(self.slowest.get(op, 0.0), event.duration)

    def render(self) -> str:
        lines = []
        for op, counts in sorted(self.counts.items()):
            summary = ", ".join(f"{name}={n}" for name, n in sorted(counts.items()))
            lines.append(f"  {op}: {summary}; slowest call {self.slowest.get(op, 0.0):g}s")
        return "\n".join(lines)


shipped: list[str] = []


async def ship(event: Event) -> None:
    """An async handler: pretend to send the event to a remote collector."""
    await asyncio.sleep(0)  # an await stands in for network I/O
    shipped.append(f"{type(event).__name__}({event.operation})")


attempts: Counter[str] = Counter()


# CallSucceeded/CallFailed come from the pipeline (once per call), so the
# pipeline gets the bus as well as the policies inside it.
@pipeline(retry(attempts=3, on=ConnectionError, backoff=backoff.constant(0.5), clock=clock, bus=bus), bus=bus)
async def flaky(key: str) -> str:
    """Fails on its first attempt for every key."""
    attempts[key] += 1
    if attempts[key] == 1:
        raise ConnectionError("reset by peer")
    return key.upper()


@pipeline(
    fallback("default", bus=bus),
    retry(attempts=2, on=TimeoutError, backoff=0.1, clock=clock, bus=bus),
    timeout(1.0, clock=clock, bus=bus),
    bus=bus,
)
async def hangs() -> str:
    """Never answers in time; the fallback answers instead."""
    await clock.sleep(60)
    return "unreachable"


async def main() -> None:
    """Subscribe both handlers, make some calls, and print the report."""
    report = HealthReport()
    with (
        bus.subscribe(report),  # no types: every event
        resilient.subscribe(ship, RetriesExhausted, FallbackUsed, TimeoutElapsed, bus=bus),
    ):
        for key in ("a", "b"):
            assert await flaky(key) == key.upper()
        assert await hangs() == "default"
        await bus.drain()  # wait for the async handler's tasks
    print("health report:")
    print(report.render())
    print("shipped:", ", ".join(shipped))

    assert report.counts["flaky"][RetryScheduled.__name__] == 2
    assert report.counts["flaky"][CallSucceeded.__name__] == 2
    assert report.slowest["flaky"] == 0.5  # one backoff wait, in virtual time
    assert report.counts["hangs"]["TimeoutElapsed"] == 2
    assert report.counts["hangs"][CallSucceeded.__name__] == 1  # the fallback answered
    assert shipped.count("TimeoutElapsed(hangs)") == 2
    assert "FallbackUsed(hangs)" in shipped
    assert "RetriesExhausted(hangs)" in shipped

    # Outside the with block both subscriptions are gone: nothing is recorded.
    attempts.clear()
    await flaky("c")
    assert report.counts["flaky"][RetryScheduled.__name__] == 2
    assert report.counts["flaky"][CallSucceeded.__name__] == 2
    assert report.slowest["flaky"] == 0.5  # one backoff wait, in virtual time


if __name__ == "__main__":
    asyncio.run(main())
