"""Circuit breaker and bulkhead: overhead and throughput (issue 3).

Prints Markdown tables:

- closed-breaker overhead per call, async and sync, side by side with the
  ``circuitbreaker`` package and a hand-written breaker (budget: ours at most
  half of ``circuitbreaker``'s);
- uncontended bulkhead overhead vs a bare ``asyncio.Semaphore`` (and hyx);
- calls/second of 1,000 tasks x 100 calls through bulkhead(50) + breaker vs
  ``asyncio.Semaphore`` + the hand-written breaker (budget: at least as fast).

Usage::

    python benchmarks/breaker_bulkhead.py            # about 10 s
    python benchmarks/breaker_bulkhead.py --quick    # CI smoke
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import Any

import peers as pr
from _harness import (
    FULL,
    QUICK,
    Check,
    Settings,
    Stats,
    fmt_ns,
    fmt_ratio,
    is_quick,
    machine,
    measure_async,
    measure_sync,
    table,
    verdict,
)
from overhead import ok, ok_sync
from workloads import throughput, throughput_table

LIBS = ("resilient", "stdlib", "circuitbreaker", "hyx")


def _variants(builders: dict[str, Any], target: Any, prefix: str) -> dict[str, Any]:
    out = {}
    for lib in LIBS:
        b = builders.get(lib)
        if b is None or isinstance(b, str):
            continue
        try:
            out[f"{prefix}:{lib}"] = b(target)
        except LookupError:
            continue
    return out


def _rows(stats: dict[str, Stats], prefix: str, bare: str) -> dict[str, float]:
    base = stats[bare].median
    return {k.split(":", 1)[1]: s.median - base for k, s in stats.items() if k.startswith(prefix + ":")}


def run(settings: Settings, tasks: int, calls: int, rounds: int) -> list[Check]:
    """Measure, print the tables, and return the budget checks."""
    checks: list[Check] = []

    async def main() -> tuple[dict[str, Stats], Any]:
        v: dict[str, Any] = {"bare": ok}
        v.update(_variants(pr.BREAKER_ASYNC, ok, "breaker"))
        v.update(_variants(pr.BULKHEAD_ASYNC, ok, "bulkhead"))
        stats = await measure_async(v, settings)
        return stats, await throughput(rounds, tasks, calls)

    astats, (tp, missing) = asyncio.run(main())
    sv: dict[str, Any] = {"bare": ok_sync}
    sv.update(_variants(pr.BREAKER_SYNC, ok_sync, "sbreaker"))
    sstats = measure_sync(sv, settings)

    rows = [
        ("circuit breaker, closed (async)", _rows(astats, "breaker", "bare")),
        ("circuit breaker, closed (sync)", _rows(sstats, "sbreaker", "bare")),
        ("bulkhead, uncontended (stdlib = asyncio.Semaphore)", _rows(astats, "bulkhead", "bare")),
    ]
    out = []
    for title, over in rows:
        res = over.get("resilient")
        out.append(
            [
                title,
                *[fmt_ns(over[lib]) if lib in over else "n/a" for lib in LIBS],
                fmt_ratio(res, over.get("stdlib")),
            ]
        )
        if "circuitbreaker" in over and res is not None:
            cb = over["circuitbreaker"]
            checks.append(
                Check(
                    f"{title}: at most half of `circuitbreaker`",
                    f"{fmt_ns(res)} vs {fmt_ns(cb)} ({fmt_ratio(res, cb)})",
                    res <= 0.5 * cb,
                )
            )
    print(f"# Circuit breaker and bulkhead\n\n{machine()}\n")
    print(f"## Overhead per call over a bare call ({settings.rounds} interleaved rounds, medians)\n")
    print(table(["scenario", *LIBS, "resilient / stdlib"], out))
    print(f"\n## Throughput: {tasks:,} tasks x {calls} calls through bulkhead(50) + breaker\n")
    print(throughput_table(tp, missing, checks))
    print("\n## Budgets\n")
    print(table(["budget", "measured", "verdict"], [[c.what, c.measured, verdict(c.passed)] for c in checks]))
    return checks


def main(argv: Sequence[str]) -> int:
    """Run in full or ``--quick`` mode; with ``--strict`` a failed budget exits 1."""
    if is_quick(argv):
        checks = run(QUICK, tasks=100, calls=20, rounds=1)
    else:
        checks = run(FULL, tasks=1000, calls=100, rounds=5)
    return 1 if "--strict" in argv and any(c.passed is False for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
