"""Staying within a partner API's quota of 5 requests per second.

One ``rate_limiter`` object is the quota: every function that calls the
partner API shares it. A batch job waits for its permits (``max_wait``), an
interactive endpoint is rejected at once and lets ``retry`` come back after
the error's ``retry_after``, and a sync reporting job draws on the same
permits. Time is virtual (``FakeClock``), so the waits pass instantly and the
printed start times are exact. Exits 0.

    python examples/rate_limited_api.py
"""

from __future__ import annotations

import asyncio

import resilient
from resilient import RateLimitedError, backoff, rate_limiter, retry
from resilient.events import Event, RateLimited
from resilient.testing import FakeClock

clock = FakeClock()
started: list[tuple[str, float]] = []


def partner_request(what: str) -> str:
    """The partner API (a stand-in): note when each request starts."""
    started.append((what, clock.monotonic()))
    return f"{what}: ok"


# --8<-- [start:quota]
# The quota: 5 requests per second, at most 5 at once after a quiet spell.
# Batch calls may wait up to 2 s for a permit; the endpoint below never waits.
batch_quota = rate_limiter(5, max_wait=2.0, name="partner", clock=clock)
interactive_quota = rate_limiter(5, name="partner-interactive", clock=clock)


@batch_quota
async def sync_catalogue_item(sku: int) -> str:
    return partner_request(f"item {sku}")


@retry(attempts=3, on=RateLimitedError, backoff=backoff.constant(0.01, max_delay=1.0), clock=clock)
@interactive_quota
async def price(sku: int) -> str:
    return partner_request(f"price {sku}")


@batch_quota  # a sync function shares the same permits (thread-safe)
def nightly_report() -> str:
    return partner_request("report")


# --8<-- [end:quota]


def on_rejected(event: Event) -> None:
    """Print every rejection and when a permit will be free."""
    assert isinstance(event, RateLimited)
    after = f"retry after {event.retry_after:g}s"
    print(f"  [{event.name}] rejected {event.operation} at t={event.time:g}s; {after}")


async def main() -> None:
    """Run the batch, the endpoint and the report against the quota."""
    with resilient.subscribe(on_rejected, RateLimited):
        print("a batch of 8 items: 5 at once, then one every 0.2 s")
        results = await asyncio.gather(*(sync_catalogue_item(sku) for sku in range(8)))
        assert len(results) == 8
        batch_times = [t for what, t in started if what.startswith("item")]
        print(f"  started at {[round(t, 2) for t in batch_times]}")
        assert [round(t, 2) for t in batch_times] == [0.0] * 5 + [0.2, 0.4, 0.6]

        print("the endpoint: 5 prices at once, the 6th is rejected and retried after retry_after")
        for sku in range(6):
            await price(sku)
        price_times = [round(t, 2) for what, t in started if what.startswith("price")]
        print(f"  started at {price_times}")
        assert price_times[-1] == round(price_times[0] + 0.2, 2)

        print("the sync report draws on the batch's permits")
        left = batch_quota.available
        print(f"  {left} permit free at t={clock.monotonic():g}s; {nightly_report()}")
        assert (left, batch_quota.available) == (1, 0)
    assert batch_quota.queued == 0


if __name__ == "__main__":
    asyncio.run(main())
