"""Quickstart: protect a flaky async dependency with fallback > timeout > retry.

The fake dependency fails some calls with ConnectionError and hangs on
others. The pipeline retries failures with jittered exponential backoff,
bounds each attempt with a timeout, bounds the whole call with an outer
timeout, and falls back to a cached value when everything else fails.
Events print as they happen. Runs in a couple of seconds; exits 0.

    python examples/quickstart.py
"""

from __future__ import annotations

import asyncio
import random

import resilient
from resilient import backoff, fallback, retry, timeout
from resilient.events import Event

rng = random.Random(7)  # seeded: the same story every run


async def flaky_lookup(user_id: int) -> str:
    """A dependency that fails 40% of calls and hangs on 20% of them."""
    roll = rng.random()
    if roll < 0.4:
        raise ConnectionError("connection refused")
    if roll < 0.6:
        await asyncio.sleep(10)  # hangs: only a timeout gets us out
    await asyncio.sleep(0.01)
    return f"user-{user_id}"


@fallback("cached-user")  # outermost: whatever happens, answer something
@timeout(1.0)  # total budget for all attempts and waits
@retry(attempts=4, on=(ConnectionError, TimeoutError), backoff=backoff.exponential(initial=0.05))
@timeout(0.15)  # per attempt: a hang costs 150 ms, not 10 s
async def get_user(user_id: int) -> str:
    """Fetch a user name through the protected pipeline."""
    return await flaky_lookup(user_id)


def show(event: Event) -> None:
    """Print each event as it happens."""
    fields = []
    for key in event.__slots__:
        if key in ("policy", "name", "operation", "time"):
            continue
        value = getattr(event, key)
        if value is None:
            continue
        fields.append(f"{key}={value:.3f}" if isinstance(value, float) else f"{key}={value!r}")
    print(f"  {event.policy:>9} | {type(event).__name__}: {', '.join(fields)}")


async def main() -> None:
    """Make a few calls and show what the policies did."""
    print("pipeline:", resilient.pipeline_of(get_user))
    with resilient.subscribe(show):
        for user_id in range(1, 7):
            name = await get_user(user_id)
            print(f"get_user({user_id}) -> {name!r}")
    await resilient.events.default_bus.drain()


if __name__ == "__main__":
    asyncio.run(main())
