"""Load and memory measurements shared by ``compare.py`` and ``breaker_bulkhead.py``."""

from __future__ import annotations

import asyncio
import gc
import statistics
import tracemalloc
import types
from collections.abc import Awaitable, Callable
from typing import Any

import peers as pr
from _harness import Check, fmt_ratio, table, timer
from overhead import ok

AsyncFn = Callable[[], Awaitable[Any]]

# --- throughput ----------------------------------------------------------------------------


async def _load(fn: AsyncFn, tasks: int, calls: int) -> float:
    async def worker() -> None:
        for _ in range(calls):
            await fn()

    clock = timer()  # CPU time by default: the whole run is CPU-bound (sleep(0) only)
    t0 = clock()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    return tasks * calls / ((clock() - t0) / 1e9)


async def throughput(rounds: int, tasks: int, calls: int) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Calls per second of each library's bulkhead(50) + breaker, interleaved rounds."""
    builders = pr.throughput_builders()
    out: dict[str, list[float]] = {}
    missing: dict[str, str] = {}
    fns: dict[str, AsyncFn] = {}
    for lib, b in builders.items():
        if isinstance(b, str):
            missing[lib] = b
            continue
        try:
            fns[lib] = b(pr.yield_once)
        except LookupError as exc:
            missing[lib] = str(exc)
            continue
        out[lib] = []
        await _load(fns[lib], min(tasks, 100), 5)  # warm-up
    labels = list(fns)
    for r in range(rounds):
        k = r % len(labels)
        for lib in labels[k:] + labels[:k]:
            gc.collect()
            out[lib].append(await _load(fns[lib], tasks, calls))
    return out, missing


# --- memory --------------------------------------------------------------------------------


def _fresh(n: int, proto: Callable[..., Any]) -> list[Callable[..., Any]]:
    # Distinct function objects sharing one code object, made before tracing starts.
    return [types.FunctionType(proto.__code__, proto.__globals__, f"fn{i}") for i in range(n)]


def memory(n: int) -> dict[str, dict[str, float | str]]:
    """Bytes allocated per decorated function (a fresh policy per function), per library.

    Must run inside the event loop: hyx's timeout binds the running loop when decorating.
    """
    kinds = {
        "retry": pr.RETRY_ASYNC,
        "timeout": pr.TIMEOUT_ASYNC,
        "breaker": pr.BREAKER_ASYNC,
        "stack": pr.STACK_ASYNC,
    }
    out: dict[str, dict[str, float | str]] = {}
    for kind, builders in kinds.items():
        row: dict[str, float | str] = {}
        for lib in pr.LIBS:
            b = builders.get(lib, pr._NO_POLICY)
            if isinstance(b, str):
                row[lib] = b
                continue
            fns = _fresh(n, ok)
            try:
                b(fns[0])  # imports and lazy module state happen outside the measurement
            except LookupError as exc:
                row[lib] = str(exc)
                continue
            gc.collect()
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            kept = [b(f) for f in fns[1:]]
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
            row[lib] = (after - before) / len(kept)
            del kept
        out[kind] = row
    return out


def throughput_table(res: dict[str, list[float]], missing: dict[str, str], checks: list[Check]) -> str:
    """Median calls/second per library, with the budget against the stdlib version."""
    med = {lib: statistics.median(v) for lib, v in res.items()}
    out = []
    for lib in pr.LIBS:
        if lib in med:
            out.append(
                [lib, f"{med[lib]:,.0f}", f"{max(res[lib]):,.0f}", fmt_ratio(med[lib], med.get("stdlib"))]
            )
        elif lib in missing:
            out.append([lib, "n/a", missing[lib], "-"])
    if "resilient" in med and "stdlib" in med:
        passed: bool | None = med["resilient"] >= med["stdlib"]
        measured = f"{med['resilient']:,.0f} vs {med['stdlib']:,.0f} calls/s"
    else:
        passed, measured = None, "not measured"
    checks.append(Check("throughput at least asyncio.Semaphore + hand-written breaker", measured, passed))
    return table(["library", "calls/s (median)", "calls/s (best)", "vs stdlib"], out)


def memory_table(mem: dict[str, dict[str, float | str]]) -> str:
    """Bytes per decorated function."""
    out = []
    for kind, row in mem.items():
        cells = [kind]
        for lib in pr.LIBS:
            v = row.get(lib, "n/a")
            cells.append(f"{v:,.0f} B" if isinstance(v, float) else "n/a")
        out.append(cells)
    return table(["policy", *pr.LIBS], out)
