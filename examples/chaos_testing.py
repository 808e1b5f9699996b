"""Fault injection: a game day for the inventory client, switched on and off at run time.

The client is guarded as the docs recommend: ``fallback`` > ``timeout``
(total) > ``retry`` > ``circuit_breaker``. Innermost, two chaos policies
stand in for a misbehaving dependency: 30 % of calls fail with
``ConnectionError``, 20 % hang for 5 s. Both read a switch on every call,
so chaos is turned on and off while the program runs, as an admin endpoint
or a configuration reload would.

Virtual time (``FakeClock``) and seeded draws make the run instant and the
same every time. The events tell the story: what was injected, how often
retry stepped in, when the breaker opened, and how many answers came from
the fallback. Exits 0.

    python examples/chaos_testing.py
"""

from __future__ import annotations

import asyncio
from collections import Counter

from resilient import chaos, circuit_breaker, fallback, retry, timeout
from resilient.events import (
    ChaosInjected,
    CircuitOpened,
    CircuitRejected,
    Event,
    FallbackUsed,
    RetriesExhausted,
    RetryScheduled,
    TimeoutElapsed,
)
from resilient.testing import FakeClock, capture_events


class Settings:
    """Where the service keeps its switches (reloaded from configuration in real life)."""

    chaos = False


settings = Settings()
clock = FakeClock()
breaker = circuit_breaker(name="inventory", failure_threshold=3, recovery_timeout=30, clock=clock)


@fallback({"sku": None, "in_stock": "unknown"})
@timeout(2.0, clock=clock)
@retry(attempts=3, on=(ConnectionError, TimeoutError), backoff=0.1, clock=clock)
@breaker
@timeout(1.0, clock=clock)
@chaos.fault(ConnectionError, rate=0.3, seed=11, enabled=lambda: settings.chaos, name="inventory-fault")
@chaos.latency(5.0, rate=0.2, seed=12, enabled=lambda: settings.chaos, clock=clock, name="inventory-slow")
async def stock(sku: str) -> dict[str, str | None]:
    """Ask the inventory service (here: always answers at once)."""
    return {"sku": sku, "in_stock": "yes"}


def tally(events: list[Event]) -> Counter[str]:
    """Count what happened, by kind."""
    counts: Counter[str] = Counter()
    for e in events:
        if isinstance(e, ChaosInjected):
            counts[f"injected {e.kind}"] += 1
        elif isinstance(
            e,
            (RetryScheduled, RetriesExhausted, TimeoutElapsed, FallbackUsed, CircuitOpened, CircuitRejected),
        ):
            counts[type(e).__name__] += 1
    return counts


async def phase(title: str, calls: int) -> list[dict[str, str | None]]:
    """Make *calls* calls and print what the policies did."""
    with capture_events() as events:
        answers = [await stock(f"sku-{i}") for i in range(calls)]
    good = sum(a["in_stock"] == "yes" for a in answers)
    state = breaker.state.value
    print(f"{title}: {good}/{calls} real answers, {calls - good} from the fallback; breaker {state}")
    for kind, n in sorted(tally(events).items()):
        print(f"    {kind:<20} {n}")
    return answers


async def main() -> None:
    before = await phase("chaos off", 20)
    assert all(a["in_stock"] == "yes" for a in before)

    settings.chaos = True  # the game day starts
    during = await phase("chaos on ", 40)
    assert any(a["in_stock"] == "unknown" for a in during)  # the fallback caught what got through

    settings.chaos = False  # and ends
    clock.advance(30)  # the breaker's recovery timeout passes
    after = await phase("chaos off", 20)
    assert all(a["in_stock"] == "yes" for a in after)  # everything recovered


if __name__ == "__main__":
    asyncio.run(main())
