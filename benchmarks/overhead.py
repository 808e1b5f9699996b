"""Per-call overhead of resilient policies vs the same logic hand-written (issue 2).

Prints Markdown tables: for each scenario, the per-call time of a bare
``await f()``, and the overhead (time minus bare) of the hand-written stdlib
version and of ``resilient``, with the budget verdict where the issue sets one:

- ``@retry`` on the success path adds at most 2x what the hand-written loop adds;
- ``@timeout`` costs no more than ``asyncio.timeout`` in a closure.

Usage::

    python benchmarks/overhead.py            # about 20 s
    python benchmarks/overhead.py --quick    # CI smoke, a few seconds

See ``_harness.py`` for the method (interleaved rounds, medians).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import handwritten as hw
from _harness import (
    FULL,
    QUICK,
    Settings,
    Stats,
    fmt_ns,
    fmt_ratio,
    is_quick,
    machine,
    measure_async,
    measure_sync,
    table,
)

import resilient

Budget = Callable[[float, float], bool] | None


def _ok(resilient_over: float, hand_over: float) -> bool:
    return resilient_over <= hand_over


def _twice(resilient_over: float, hand_over: float) -> bool:
    return resilient_over <= 2 * hand_over


def flaky_async() -> Callable[[], Awaitable[int]]:
    """A coroutine function failing twice, then succeeding, over and over."""
    n = 0

    async def flaky() -> int:
        nonlocal n
        n += 1
        if n % 3:
            raise ValueError("transient")
        return 1

    return flaky


def flaky_sync() -> Callable[[], int]:
    """A function failing twice, then succeeding, over and over."""
    n = 0

    def flaky() -> int:
        nonlocal n
        n += 1
        if n % 3:
            raise ValueError("transient")
        return 1

    return flaky


async def ok() -> int:
    """The protected async function: returns at once."""
    return 1


def ok_sync() -> int:
    """The protected sync function: returns at once."""
    return 1


def _three_async(fn: Callable[[], Awaitable[int]]) -> Callable[[], Awaitable[int]]:
    # The bare cost of three attempts with no wrapper, for the flaky rows.
    async def bare() -> int:
        for _ in range(3):
            try:
                return await fn()
            except ValueError:
                pass
        raise AssertionError("flaky() did not succeed on the third call")

    return bare


def _three_sync(fn: Callable[[], int]) -> Callable[[], int]:
    def bare() -> int:
        for _ in range(3):
            try:
                return fn()
            except ValueError:
                pass
        raise AssertionError("flaky() did not succeed on the third call")

    return bare


# (title, bare, hand-written, resilient, budget, budget text)
Row = tuple[str, str, str, str, Budget, str]


def async_variants() -> tuple[dict[str, Callable[[], Awaitable[Any]]], list[Row]]:
    """Build the async variants and the rows that compare them."""
    v: dict[str, Callable[[], Awaitable[Any]]] = {"bare": ok}
    v["hand retry"] = hw.retry(3)(ok)
    v["res retry"] = resilient.retry(attempts=3, backoff=0)(ok)
    v["bare x3"] = _three_async(flaky_async())
    v["hand retry flaky"] = hw.retry(3)(flaky_async())
    v["res retry flaky"] = resilient.retry(attempts=3, backoff=0)(flaky_async())
    v["hand timeout"] = hw.timeout(10)(ok)
    v["res timeout"] = resilient.timeout(10)(ok)
    v["hand fallback"] = hw.fallback(0)(ok)
    v["res fallback"] = resilient.fallback(0)(ok)
    v["hand stack"] = hw.fallback(0)(hw.timeout(10)(hw.retry(3)(ok)))
    v["res stack"] = resilient.fallback(0)(resilient.timeout(10)(resilient.retry(attempts=3, backoff=0)(ok)))
    rows: list[Row] = [
        ("retry, success first time", "bare", "hand retry", "res retry", _twice, "<= 2x hand"),
        (
            "retry, 2 failures then success (backoff=0)",
            "bare x3",
            "hand retry flaky",
            "res retry flaky",
            None,
            "-",
        ),
        ("timeout (vs `asyncio.timeout`)", "bare", "hand timeout", "res timeout", _ok, "<= hand"),
        ("fallback (no failure)", "bare", "hand fallback", "res fallback", None, "-"),
        ("fallback > timeout > retry", "bare", "hand stack", "res stack", None, "-"),
    ]
    return v, rows


def sync_variants() -> tuple[dict[str, Callable[[], Any]], list[Row]]:
    """Build the sync variants and the rows that compare them."""
    v: dict[str, Callable[[], Any]] = {"bare": ok_sync}
    v["hand retry"] = hw.retry_sync(3)(ok_sync)
    v["res retry"] = resilient.retry(attempts=3, backoff=0)(ok_sync)
    v["bare x3"] = _three_sync(flaky_sync())
    v["hand retry flaky"] = hw.retry_sync(3)(flaky_sync())
    v["res retry flaky"] = resilient.retry(attempts=3, backoff=0)(flaky_sync())
    rows: list[Row] = [
        ("sync retry, success first time", "bare", "hand retry", "res retry", _twice, "<= 2x hand"),
        (
            "sync retry, 2 failures then success",
            "bare x3",
            "hand retry flaky",
            "res retry flaky",
            None,
            "-",
        ),
    ]
    return v, rows


def render(stats: dict[str, Stats], rows: list[Row]) -> tuple[str, bool]:
    """Render the overhead table; return it and whether every budget passed."""
    out = []
    all_ok = True
    for title, bare, hand, res, budget, text in rows:
        b = stats[bare]
        hand_over = stats[hand].median - b.median
        res_over = stats[res].median - b.median
        verdict = "-"
        if budget is not None:
            passed = budget(res_over, hand_over)
            all_ok &= passed
            verdict = f"{text}: {'PASS' if passed else 'FAIL'}"
        out.append(
            [
                title,
                fmt_ns(b.median),
                f"{fmt_ns(hand_over)} (min {fmt_ns(stats[hand].min - b.min)})",
                f"{fmt_ns(res_over)} (min {fmt_ns(stats[res].min - b.min)})",
                fmt_ratio(res_over, hand_over),
                verdict,
            ]
        )
    headers = ["scenario", "bare call", "hand-written adds", "resilient adds", "resilient / hand", "budget"]
    return table(headers, out), all_ok


def run(settings: Settings) -> bool:
    """Measure, print the tables, and return whether every budget passed."""
    print(f"# Overhead per call over a bare call\n\n{machine()}; resilient {resilient.__version__}")
    print(f"{settings.rounds} interleaved rounds x {settings.number} calls; medians (minimum in brackets)\n")
    av, arows = async_variants()

    async def main() -> dict[str, Stats]:
        return await measure_async(av, settings)

    astats = asyncio.run(main())
    atext, a_ok = render(astats, arows)
    print("## async\n")
    print(atext)
    sv, srows = sync_variants()
    stext, s_ok = render(measure_sync(sv, settings), srows)
    print("\n## sync\n")
    print(stext)
    return a_ok and s_ok


if __name__ == "__main__":
    run(QUICK if is_quick() else FULL)
