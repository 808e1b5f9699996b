"""Issue 12 parts 4 and 5: what outcomes, result checks and Retry-After parsing cost.

Rows for ``compare.py`` (which times them interleaved with everything else):

- ``outcome(aw)`` against the hand-written ``try``/``except`` it replaces;
- ``gather_outcomes`` of ten coroutines against ``asyncio.gather(...,
  return_exceptions=True)`` and a ``TaskGroup`` of the same ten;
- the success path of ``fallback(on_result=...)`` and of
  ``retry(on_result=retryable_status())`` against the same policies without
  a result check;
- ``parse_retry_after`` on delta-seconds, an HTTP-date and garbage (per
  response received).

Budgets: ``outcome()`` adds at most 1 µs over the hand-written ``try``;
``gather_outcomes`` of ten costs at most 1.2x ``asyncio.gather(...,
return_exceptions=True)``.

Run alone: ``python benchmarks/outcomes_http.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from _harness import (
    FULL,
    QUICK,
    Check,
    Settings,
    Stats,
    fmt_ns,
    fmt_ratio,
    is_quick,
    measure_async,
    measure_sync,
    table,
)
from overhead import ok

import resilient
from resilient.http import parse_retry_after, retryable_status

FAN_OUT = 10
DATE = "Wed, 21 Oct 2015 07:28:00 GMT"


class Response:
    """The least a response needs for ``retryable_status``: a status and headers."""

    status_code = 200
    headers: dict[str, str] = {}  # noqa: RUF012 (read only)


_RESPONSE = Response()


async def respond() -> Response:
    """A call answering 200 at once."""
    return _RESPONSE


def async_variants() -> dict[str, Callable[[], Awaitable[Any]]]:
    """Label -> no-argument coroutine function, for ``measure_async``."""

    async def hand_outcome() -> tuple[bool, object]:
        try:
            value = await ok()
        except Exception as exc:
            return False, exc
        return True, value

    async def res_outcome() -> object:
        return await resilient.outcome(ok())

    async def hand_gather() -> object:
        return await asyncio.gather(*[ok() for _ in range(FAN_OUT)], return_exceptions=True)

    async def res_gather() -> object:
        return await resilient.gather_outcomes(*[ok() for _ in range(FAN_OUT)])

    async def task_group() -> None:
        async with asyncio.TaskGroup() as tg:
            for _ in range(FAN_OUT):
                tg.create_task(ok())

    return {
        "oh bare": ok,
        "oh hand outcome": hand_outcome,
        "oh outcome": res_outcome,
        "oh gather": hand_gather,
        "oh gather_outcomes": res_gather,
        "oh taskgroup": task_group,
        "oh fallback": resilient.fallback(0)(ok),
        "oh fallback on_result": resilient.fallback(0, on_result=lambda r: r is None)(ok),
        "oh retry": resilient.retry(attempts=3, backoff=0)(respond),
        "oh retry on_result": resilient.retry(attempts=3, backoff=0, on_result=retryable_status())(respond),
    }


def sync_variants() -> dict[str, Callable[[], Any]]:
    """Label -> no-argument function, for ``measure_sync``."""

    def now() -> float:
        return 1445412480.0

    return {
        "oh parse delta": lambda: parse_retry_after("120"),
        "oh parse date": lambda: parse_retry_after(DATE, now=now),
        "oh parse garbage": lambda: parse_retry_after("soon"),
    }


def report(stats: dict[str, Stats], checks: list[Check]) -> str:
    """The table of these rows; appends the two budgets to *checks*."""
    m = {label: s.median for label, s in stats.items() if label.startswith("oh ")}
    bare = m["oh bare"]
    outcome_over, hand_over = m["oh outcome"] - bare, m["oh hand outcome"] - bare
    rows = [
        ["`await outcome(f())`", fmt_ns(m["oh outcome"]), f"{fmt_ns(outcome_over)} over a bare await"],
        ["hand-written `try`/`except` around it", fmt_ns(m["oh hand outcome"]), f"{fmt_ns(hand_over)}"],
        [f"`gather_outcomes` of {FAN_OUT}", fmt_ns(m["oh gather_outcomes"]), ""],
        [
            f"`asyncio.gather(..., return_exceptions=True)` of {FAN_OUT}",
            fmt_ns(m["oh gather"]),
            f"gather_outcomes / gather = {fmt_ratio(m['oh gather_outcomes'], m['oh gather'])}",
        ],
        [f"`TaskGroup` of {FAN_OUT} (no outcomes)", fmt_ns(m["oh taskgroup"]), ""],
        [
            "`fallback(0, on_result=...)`, no failure",
            fmt_ns(m["oh fallback on_result"]),
            f"{fmt_ns(m['oh fallback on_result'] - m['oh fallback'])} over `fallback(0)`",
        ],
        [
            "`retry(on_result=retryable_status())`, 200 first time",
            fmt_ns(m["oh retry on_result"]),
            f"{fmt_ns(m['oh retry on_result'] - m['oh retry'])} over `retry()`",
        ],
        ["`parse_retry_after('120')`", fmt_ns(m["oh parse delta"]), "per response"],
        ["`parse_retry_after(<HTTP-date>)`", fmt_ns(m["oh parse date"]), "per response"],
        ["`parse_retry_after('soon')` (ignored)", fmt_ns(m["oh parse garbage"]), "per response"],
    ]
    checks.append(
        Check(
            "`outcome()` adds at most 1 µs over a hand-written try/except",
            f"{fmt_ns(outcome_over - hand_over)} more ({fmt_ns(outcome_over)} vs {fmt_ns(hand_over)})",
            outcome_over - hand_over <= 1000.0,
        )
    )
    ratio = m["oh gather_outcomes"] / m["oh gather"]
    checks.append(
        Check(
            f"`gather_outcomes` of {FAN_OUT} costs at most 1.2x `asyncio.gather(return_exceptions=True)`",
            f"{fmt_ns(m['oh gather_outcomes'])} vs {fmt_ns(m['oh gather'])} ({ratio:.2f}x)",
            ratio <= 1.2,
        )
    )
    return table(["operation", "per call (median)", "note"], rows)


def main(argv: list[str]) -> int:
    """Measure and print these rows alone."""
    settings: Settings = QUICK if is_quick(argv) else FULL
    stats = asyncio.run(measure_async(async_variants(), settings))
    stats.update(measure_sync(sync_variants(), settings))
    checks: list[Check] = []
    print(report(stats, checks))
    print()
    print(table(["budget", "measured", "verdict"], [[c.what, c.measured, str(c.passed)] for c in checks]))
    return 0 if "--strict" not in argv or all(c.passed is not False for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
