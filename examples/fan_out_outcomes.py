"""Fan out to several services and keep every answer: gather_outcomes.

docs/outcomes.md walks through this file. Four lookups run concurrently:
one fails, one is too slow for its timeout, two answer. Every answer that
arrived is used, every failure is reported, and nothing sinks the rest.
Then the whole fan-out is cancelled midway, and every lookup still running
is cancelled and cleaned up before the cancellation reaches the caller.
Runs in a fraction of a second; needs nothing beyond the library; exits 0.

    python examples/fan_out_outcomes.py
"""

from __future__ import annotations

import asyncio

from resilient import Outcome, gather_outcomes, outcome, timeout

# --8<-- [start:services]
CLEANED_UP: list[str] = []


async def profile(user_id: int) -> dict[str, str]:
    await asyncio.sleep(0.01)
    return {"name": f"user-{user_id}"}


async def orders(user_id: int) -> list[str]:
    await asyncio.sleep(0.02)
    return ["o-1", "o-2"]


async def recommendations(user_id: int) -> list[str]:
    await asyncio.sleep(0.01)
    raise ConnectionError("recommender reset the connection")


@timeout(0.05)
async def loyalty_points(user_id: int) -> int:
    try:
        await asyncio.sleep(10)  # far too slow
        return 120
    finally:
        CLEANED_UP.append("loyalty_points")


# --8<-- [end:services]


# --8<-- [start:page]
async def account_page(user_id: int) -> dict[str, object]:
    """Build the page from whatever answered; say what did not."""
    prof, order_list, recs, points = await gather_outcomes(
        profile(user_id), orders(user_id), recommendations(user_id), loyalty_points(user_id)
    )
    page: dict[str, object] = {
        "profile": prof.unwrap(),  # no page without it: re-raise its failure, if any
        "orders": order_list.value if order_list.ok else [],
        "recommendations": recs.value if recs.ok else [],
        "points": points.value if points.ok else None,
    }
    failures: list[Outcome[object]] = [o for o in (order_list, recs, points) if not o.ok]
    page["degraded"] = [type(o.exception).__name__ for o in failures]
    return page


# --8<-- [end:page]


# --8<-- [start:cancel]
async def cancelled_midway() -> None:
    """Cancel the fan-out while lookups run: each is cancelled and awaited first."""
    CLEANED_UP.clear()
    task = asyncio.create_task(gather_outcomes(loyalty_points(1), loyalty_points(2)))
    await asyncio.sleep(0.01)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        print(f"    cancelled; cleaned up before that: {CLEANED_UP}")
    assert CLEANED_UP == ["loyalty_points", "loyalty_points"]


# --8<-- [end:cancel]


async def main() -> None:
    """Build a page with failures in it, then cancel a fan-out."""
    print("1. four lookups: two answer, one fails, one times out")
    page = await account_page(7)
    print(f"    {page}")
    assert page["orders"] == ["o-1", "o-2"]
    assert page["degraded"] == ["ConnectionError", "TimeoutExceededError"]

    print("2. one awaitable, as data")
    got = await outcome(recommendations(7))
    print(f"    {got}")
    assert not got.ok

    print("3. the caller is cancelled while lookups run")
    await cancelled_midway()


if __name__ == "__main__":
    asyncio.run(main())
