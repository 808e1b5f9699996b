"""How long a step may wait for Redis: one budget of time the event loop could use.

The budget (``RedisBackend(timeout=...)``) is meant for Redis's latency, not
the process's: a loop busy with other tasks, or blocked by a call that
should not block, cannot read a reply that has arrived, and a reply read
late is not a slow Redis. So the budget is spent in :data:`SLICES` slices,
and a slice that ends late counts only the share of it in which the loop ran
normally; after a stalled slice the step gets :data:`GRACE` loop iterations
to read a reply that arrived meanwhile. However congested the loop, a step
is given up after :data:`CEILING` budgets of wall time, so that a silent
Redis is always found.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["CEILING", "GRACE", "SLICES", "within_budget"]

SLICES = 5
"""The budget is spent in this many slices."""
CEILING = 10
"""However stalled the loop, a step is given up after this many budgets of wall time."""
GRACE = 3
"""Loop iterations a step gets after a stalled slice to read a reply that arrived meanwhile."""


async def within_budget(step: asyncio.Future[Any], budget: float) -> bool:
    """Wait for *step* for one budget of time in which the loop ran normally.

    Args:
        step: The running step.
        budget: Seconds.

    Returns:
        True if the step ended within the budget (it may have failed).
    """
    loop = asyncio.get_running_loop()
    piece = budget / SLICES
    spent = 0.0
    give_up = loop.time() + CEILING * budget
    while True:
        length = min(piece, budget - spent)
        start = loop.time()
        done, _ = await asyncio.wait((step,), timeout=length)
        if done:
            return True
        # Woken late: the loop was stalled or congested (other tasks, a
        # blocking call, a busy host), and the step could not move either.
        # Only the share of the slice in which it could is blamed on Redis.
        now = loop.time()
        elapsed = now - start
        if elapsed <= length:
            spent += length
        else:
            spent += length * length / elapsed
            # A reply that arrived while the loop was stalled is read in
            # the next few iterations: let them run before judging.
            for _ in range(GRACE):
                await asyncio.sleep(0)
                if step.done():
                    return True
        if spent >= budget * 0.999 or now >= give_up:
            return False
