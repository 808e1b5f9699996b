"""A worker that shuts down gracefully on SIGTERM: stop accepting, let in-flight work finish, cancel the rest.

When the signal arrives, four calls are in flight through the gate:

- two jobs finishing the item in hand: they end within the grace period;
- one job stuck on a dependency: cancelled when the grace period runs out
  (its caller gets ``GateClosedError(reason="cancelled")`` and goes on);
- one blocking call in a thread: a thread cannot be cancelled, so it is
  reported apart, and left to end on its own.

A call made after the signal is refused at once. The program prints the
report as one JSON line and exits 0.

    python examples/graceful_shutdown.py          # sends itself SIGTERM once the work is in flight
    python examples/graceful_shutdown.py --wait   # waits for yours: kill -TERM <pid>

POSIX only (``loop.add_signal_handler``). tests/test_example_graceful_shutdown.py
runs it with ``--wait`` and sends the signal.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable

import resilient
from resilient import GateClosedError

# --8<-- [start:gate]
GATE = resilient.gate(name="worker")  # outermost on every unit of work
GRACE = 0.5  # seconds; in production a little under the orchestrator's kill timeout


@GATE
async def job(item: int, stop: asyncio.Event, started: asyncio.Queue[str]) -> str:
    """Process one item; this one finishes soon after the shutdown begins."""
    started.put_nowait(f"job {item}")
    await stop.wait()
    await asyncio.sleep(0.01)  # the rest of the item in hand
    return f"item {item} done"


@GATE
async def stuck_job(started: asyncio.Queue[str]) -> str:
    """Wait on a dependency that never answers: only cancellation ends it."""
    started.put_nowait("stuck job")
    await asyncio.Event().wait()
    return "unreachable"


@GATE
def blocking_export(release: threading.Event, started: Callable[[str], None]) -> str:
    """Blocking work, run in a thread with asyncio.to_thread."""
    started("export")
    release.wait(timeout=30)
    return "export done"


# --8<-- [end:gate]


async def outcome(call: Awaitable[str]) -> str:
    """What a caller sees: the result, or the error it caught (and went on after)."""
    try:
        return await call
    except GateClosedError as exc:
        return f"GateClosedError({exc.reason})"


# --8<-- [start:main]
async def main(wait_for_signal: bool) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)  # a signal handler only sets an event

    release = threading.Event()
    started: asyncio.Queue[str] = asyncio.Queue()

    def from_thread(what: str) -> None:
        loop.call_soon_threadsafe(started.put_nowait, what)

    calls = [
        asyncio.create_task(outcome(job(1, stop, started))),
        asyncio.create_task(outcome(job(2, stop, started))),
        asyncio.create_task(outcome(stuck_job(started))),
        asyncio.create_task(outcome(asyncio.to_thread(blocking_export, release, from_thread))),
    ]
    for _ in calls:  # every call has started, inside the gate
        await started.get()
    print(f"ready (pid {os.getpid()}): {GATE.in_flight} calls in flight", flush=True)
    if not wait_for_signal:
        os.kill(os.getpid(), signal.SIGTERM)  # what the orchestrator would do

    await stop.wait()
    print(f"SIGTERM: closing the gate, {GRACE} s of grace", flush=True)
    closing = asyncio.create_task(GATE.close(grace=GRACE, unwind=1.0))
    await asyncio.sleep(0)  # the gate is closed from here on
    print("a new call:", await outcome(job(3, stop, started)), flush=True)
    report = await closing

    release.set()  # the thread was never cancelled; let it end before exiting
    print("callers saw:", [await c for c in calls], flush=True)
    print(
        json.dumps(
            {
                "in_flight": report.in_flight,
                "finished": report.finished,
                "cancelled": report.cancelled,
                "still_running": report.still_running,
                "sync_running": report.sync_running,
            }
        ),
        flush=True,
    )


# --8<-- [end:main]

if __name__ == "__main__":
    if sys.platform == "win32":  # pragma: no cover
        raise SystemExit("examples/graceful_shutdown.py needs loop.add_signal_handler (POSIX)")
    asyncio.run(main(wait_for_signal="--wait" in sys.argv[1:]))
