"""What emitting an event costs, and what a slow async handler can hold.

Rows (per ``bus.emit`` of one prebuilt event, median of interleaved rounds,
method in ``_harness``):

- ``wants, no subscriber``: the check a policy makes before building an event
  nobody listens to (the "events are free" path);
- ``emit, 1 sync subscriber`` / ``3 sync subscribers``: no-op sync handlers,
  run inline;
- ``emit, 1 async subscriber``: a no-op async handler subscribed on the
  running loop (one task per event; the tasks run between batches).

Then the bound on async handler work: ``--events`` events (default 150,000)
are emitted in one go to an async handler that never finishes while they are
emitted; we report what the bus holds (``pending``), what it dropped, and the
peak memory traced while emitting (``tracemalloc``).

Run: ``python benchmarks/events.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tracemalloc
from typing import Any

from _harness import FULL, QUICK, fmt_ns, is_quick, machine, measure_async, measure_sync, table

from resilient import CircuitState
from resilient.events import CircuitOpened, Event, EventBus, RetryScheduled

EVENT = CircuitOpened(
    policy="circuit_breaker",
    name="b",
    operation=None,
    time=0.0,
    previous=CircuitState.CLOSED,
    state=CircuitState.OPEN,
)


def _noop(event: Event) -> None:
    pass


async def _anoop(event: Event) -> None:
    pass


def sync_variants() -> dict[str, Any]:
    """The sync rows: one bus per row."""
    empty, one, three = EventBus(), EventBus(), EventBus()
    one.subscribe(_noop)
    for _ in range(3):
        three.subscribe(_noop)
    return {
        "wants, no subscriber": lambda: empty.wants(RetryScheduled),
        "emit, 1 sync subscriber": lambda: one.emit(EVENT),
        "emit, 3 sync subscribers": lambda: three.emit(EVENT),
    }


async def async_rows(settings: Any) -> dict[str, Any]:
    """The async row, measured inside a running loop."""
    bus = EventBus()
    bus.subscribe(_anoop)

    async def emit_one() -> None:
        bus.emit(EVENT)

    stats = await measure_async({"emit, 1 async subscriber": emit_one}, settings)
    await bus.drain()
    return stats


async def flood(events: int) -> list[str]:
    """Emit *events* events to an async handler blocked until they are all out."""
    bus = EventBus()
    gate = asyncio.Event()

    async def slow(event: Event) -> None:
        await gate.wait()

    bus.subscribe(slow)
    logging.getLogger("resilient").setLevel(logging.ERROR)  # the drop report: counted in the table instead
    tracemalloc.start()
    for _ in range(events):
        bus.emit(EVENT)
    held = bus.pending
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    gate.set()
    await bus.drain()
    dropped = getattr(bus, "dropped", None)
    return [
        f"{events:,}",
        f"{held:,}",
        "-" if dropped is None else f"{dropped:,}",
        f"{peak / 2**20:,.1f} MiB",
    ]


def main() -> None:
    """Measure and print the tables."""
    settings = QUICK if is_quick() else FULL
    events = 150_000
    if "--events" in sys.argv:
        events = int(sys.argv[sys.argv.index("--events") + 1])
    stats = measure_sync(sync_variants(), settings)
    stats.update(asyncio.run(async_rows(settings)))
    print("# Event emission\n")
    print(f"{machine()}\n")
    print(f"{settings.rounds} interleaved rounds; per-call time, median (min).\n")
    print(
        table(["row", "per call"], [[k, f"{fmt_ns(s.median)} ({fmt_ns(s.min)})"] for k, s in stats.items()])
    )
    print("\n## A slow async handler under a burst\n")
    row = asyncio.run(flood(1_000 if is_quick() else events))
    print(table(["events emitted", "held (pending)", "dropped", "peak traced memory"], [row]))


if __name__ == "__main__":
    main()
