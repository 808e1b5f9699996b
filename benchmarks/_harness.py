"""Timing harness shared by the benchmark scripts.

Method (the same for every script):

- Every variant is a no-argument callable (a coroutine function for async
  rows). One *batch* times ``number`` back-to-back calls with the thread's
  CPU clock (``time.thread_time_ns``; ``--wall`` for ``perf_counter_ns``) and divides by ``number`` (a slow variant's batch
  is shortened to about 4 ms, never below 20 calls).
- Async batches all run inside ONE running event loop (no ``asyncio.run``
  per call); the loop gets one ``await asyncio.sleep(0)`` between batches so
  cancelled timer handles are cleaned up as they would be in an application.
- Variants are *interleaved*: each round times every variant once, in an
  order rotated every round, so machine drift (other processes, frequency
  changes) hits every variant alike.
- The garbage collector is disabled during a batch (as ``timeit`` does) and
  the batch's garbage collected after it; objects alive before the
  measurement are frozen out of the collector so that stays cheap.
- We report the median of the rounds (and the minimum). Overhead is the
  variant's per-call time minus the baseline's, both medians (or both minima).
"""

from __future__ import annotations

import asyncio
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

AsyncFn = Callable[[], Awaitable[Any]]
SyncFn = Callable[[], Any]


@dataclass
class Stats:
    """Per-call times (ns) of one variant, one sample per round.

    Attributes:
        samples: Per-call nanoseconds, one per round.
    """

    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        """The median per-call time in ns."""
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        """The fastest round's per-call time in ns."""
        return min(self.samples)


@dataclass(frozen=True)
class Settings:
    """How many calls per batch and how many interleaved rounds.

    Attributes:
        number: Calls per batch.
        rounds: Interleaved rounds (samples per variant).
    """

    number: int
    rounds: int


FULL = Settings(number=2000, rounds=25)
QUICK = Settings(number=300, rounds=5)

# A batch of a slow variant is cut down to about this long, so one slow peer
# does not stretch the rounds (and the drift between variants within one).
_BATCH_NS = 4_000_000


def _calibrate(per_call_ns: float, settings: Settings) -> int:
    fit = int(_BATCH_NS / max(per_call_ns, 1.0))
    return max(20, min(settings.number, fit))


def timer() -> Callable[[], int]:
    # CPU time of this thread by default: on a shared machine, time spent
    # descheduled while another process runs is not ours to count. Every
    # batch here is CPU-bound (nothing waits on I/O or timers), so the two
    # agree on an idle machine. --wall switches to wall-clock time.
    return time.perf_counter_ns if "--wall" in sys.argv[1:] else time.thread_time_ns


def clock_name() -> str:
    """Which timer the measurements use, for the report."""
    return "wall-clock time (perf_counter)" if "--wall" in sys.argv[1:] else "thread CPU time (thread_time)"


async def _batch_async(fn: AsyncFn, number: int) -> float:
    counter = timer()
    t0 = counter()
    for _ in repeat(None, number):
        await fn()
    return (counter() - t0) / number


def _batch_sync(fn: SyncFn, number: int) -> float:
    counter = timer()
    t0 = counter()
    for _ in repeat(None, number):
        fn()
    return (counter() - t0) / number


async def measure_async(variants: dict[str, AsyncFn], settings: Settings) -> dict[str, Stats]:
    """Time each async variant in interleaved rounds inside the running loop.

    Args:
        variants: Label -> no-argument coroutine function.
        settings: Batch size and number of rounds.

    Returns:
        Label -> per-call statistics in ns.
    """
    labels = list(variants)
    out = {label: Stats() for label in labels}
    gc.collect()
    gc.freeze()  # what exists now is never collected: keeps the between-batch collections short
    number: dict[str, int] = {}
    for label in labels:  # warm-up (lazy caches, specialisation) and batch size
        number[label] = _calibrate(await _batch_async(variants[label], 50), settings)
        await asyncio.sleep(0)
    for r in range(settings.rounds):
        k = r % len(labels)
        for label in labels[k:] + labels[:k]:
            gc.collect(0)  # the batch's garbage is all young: gc was off
            gc.disable()
            try:
                t = await _batch_async(variants[label], number[label])
            finally:
                gc.enable()
            out[label].samples.append(t)
            await asyncio.sleep(0)
    return out


def measure_sync(variants: dict[str, SyncFn], settings: Settings) -> dict[str, Stats]:
    """Time each sync variant in interleaved rounds.

    Args:
        variants: Label -> no-argument function.
        settings: Batch size and number of rounds.

    Returns:
        Label -> per-call statistics in ns.
    """
    labels = list(variants)
    out = {label: Stats() for label in labels}
    gc.collect()
    gc.freeze()
    number = {label: _calibrate(_batch_sync(variants[label], 50), settings) for label in labels}
    for r in range(settings.rounds):
        k = r % len(labels)
        for label in labels[k:] + labels[:k]:
            gc.collect(0)  # the batch's garbage is all young: gc was off
            gc.disable()
            try:
                t = _batch_sync(variants[label], number[label])
            finally:
                gc.enable()
            out[label].samples.append(t)
    return out


@dataclass
class Check:
    """One budget and its verdict.

    Attributes:
        what: The budget.
        measured: The numbers behind the verdict.
        passed: The verdict (None when it cannot be judged).
    """

    what: str
    measured: str
    passed: bool | None


def verdict(passed: bool | None) -> str:
    """``PASS``, ``FAIL`` or ``n/a``."""
    return "n/a" if passed is None else ("PASS" if passed else "FAIL")


def fmt_ns(ns: float | None) -> str:
    """Format nanoseconds for a table cell (``-`` for None)."""
    if ns is None:
        return "-"
    if abs(ns) >= 10_000:
        return f"{ns / 1000:,.1f} µs"
    return f"{ns:,.0f} ns"


def fmt_ratio(a: float | None, b: float | None) -> str:
    """Format ``a / b`` as ``1.23x`` (``-`` when undefined)."""
    if a is None or b is None or b <= 0:
        return "-"
    return f"{a / b:.2f}x"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Render a Markdown table.

    Args:
        headers: Column titles.
        rows: Cells, one sequence per row.

    Returns:
        The table text (no trailing newline).
    """
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> str:
    """One line describing the interpreter and the machine."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} CPUs"
    )


def versions(dists: Sequence[str]) -> dict[str, str | None]:
    """Installed versions of *dists* (None when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for d in dists:
        try:
            found[d] = version(d)
        except PackageNotFoundError:
            found[d] = None
    return found


def is_quick(argv: Sequence[str] | None = None) -> bool:
    """True when ``--quick`` is on the command line."""
    return "--quick" in (sys.argv[1:] if argv is None else argv)
