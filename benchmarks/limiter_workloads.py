"""A saturated rate limiter whose callers wait for their permits (``compare.py``).

Many tasks push more calls through a limiter than its rate allows, every
call willing to wait as long as it takes. Two numbers per library: the rate
it actually achieved over the waiting part (the configured rate is the
ceiling), and the CPU time it spent per call doing so (the waiting itself
costs no CPU). Each round builds a fresh limiter, so every run starts with a
full burst.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import handwritten as hw
import peers as pr
from _harness import table
from overhead import ok

import resilient

AsyncFn = Callable[[], Awaitable[Any]]


def builders(rate: float, burst: int) -> dict[str, Callable[[], AsyncFn] | str]:
    """Per library: a builder of a fresh limited ``ok`` (rate/s, bursts of *burst*), or why there is none."""

    def res() -> AsyncFn:
        return resilient.rate_limiter(rate, burst=burst, max_wait=math.inf)(ok)

    def stdlib() -> AsyncFn:
        return hw.rate_limiter(rate, burst, wait=True)(ok)

    def aiolimiter() -> AsyncFn:
        # Capacity `burst`, leaking rate/s: the same limit.
        return pr._aiolimiter(burst, burst / rate)(ok)

    return {"resilient": res, "stdlib": stdlib, "aiolimiter": aiolimiter, "hyx": "rejects, never waits"}


async def _run(fn: AsyncFn, tasks: int, calls: int) -> tuple[float, float]:
    async def worker() -> None:
        for _ in range(calls):
            await fn()

    wall0, cpu0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    return time.perf_counter() - wall0, time.process_time() - cpu0


async def saturated(
    rounds: int, tasks: int, calls: int, rate: float, burst: int
) -> tuple[dict[str, list[tuple[float, float]]], dict[str, str]]:
    """(wall seconds, CPU seconds) per round of *tasks* x *calls* waiting calls, per library."""
    found = builders(rate, burst)
    out: dict[str, list[tuple[float, float]]] = {}
    missing: dict[str, str] = {}
    for lib, b in found.items():
        if isinstance(b, str):
            missing[lib] = b
            continue
        try:
            b()
        except LookupError as exc:  # the peer is not installed
            missing[lib] = str(exc)
            continue
        out[lib] = []
    for _ in range(rounds):
        for lib in out:
            build = found[lib]
            assert not isinstance(build, str)
            out[lib].append(await _run(build(), tasks, calls))
    return out, missing


def saturated_table(
    res: dict[str, list[tuple[float, float]]], missing: dict[str, str], calls: int, rate: float, burst: int
) -> str:
    """Achieved rate (median round) and CPU per call for each library."""
    rows = []
    for lib, runs in res.items():
        runs = sorted(runs)
        wall, cpu = runs[len(runs) // 2]
        achieved = (calls - burst) / wall  # the burst goes at once; the rest is paced
        rows.append([lib, f"{achieved:,.0f}/s", f"{achieved / rate:.0%}", f"{cpu / calls * 1e6:.1f} µs"])
    for lib, why in missing.items():
        rows.append([lib, "n/a", "", why])
    return table(["library", "achieved rate", "of the limit", "CPU per call"], rows)
