"""resilient side by side with its peers and the hand-written stdlib version (issues 7 and 11).

Measures, in one process and interleaved (see ``_harness.py``), the per-call
overhead over a bare call of every library that has the policy, plus the
throughput of 1,000 tasks x 100 calls through bulkhead(50) + breaker, the
memory and time each decorated function costs, and the import time (in
fresh interpreters; see ``startup.py``), then prints Markdown tables with a
PASS/FAIL budget column:

- every resilient policy adds less overhead than the fastest peer with it
  (the rate limiter: hyx's token bucket and aiolimiter);
- the five-policy stack adds no more than the hand-written stdlib stack;
- ``@timeout`` costs no more than ``asyncio.timeout``;
- throughput at least that of ``asyncio.Semaphore`` + a hand-written breaker;
- with no subscribers, events cost nothing measurable (a policy on a bus with
  one subscriber to an unrelated event type costs within 5% of the same
  policy on an empty bus);
- the issue 2/3 budgets: sync ``@retry`` success path at most 2x the hand-
  written loop's overhead; closed breaker at most half of ``circuitbreaker``'s;
- the issue 11 budgets: decorating with ``retry`` no dearer than tenacity and
  at most 1 KB kept per decorated function; ``import resilient`` no slower
  than ``import stamina``; and today's per-call numbers as the floor:
  ``@retry`` success at most 1.1x the hand-written loop, the five-policy
  stack at most 0.85x the hand-written stack;
- the issue 12 budgets: ``@hedge`` whose first attempt answers at once costs
  no more than a hand-written ``asyncio.wait`` hedge (no peer has hedging);
  chaos that is switched off adds at most 100 ns to a call (the layer's own
  cost: a pipeline with it against the same pipeline without it); an open
  ``gate()`` (in-flight accounting) adds at most 1.1x what an uncontended
  ``bulkhead`` adds (the ``asyncio.current_task()`` column shows what
  finding the running task would cost without the per-task cache used on
  CPython 3.11); a function following a ``Registry`` key costs what the
  same pipeline decorated directly costs (within 5%).
- the issue 12 (outcomes, HTTP) budgets, from ``outcomes_http.py``:
  ``outcome()`` at most 1 µs over a hand-written ``try``, ``gather_outcomes``
  at most 1.2x ``asyncio.gather(return_exceptions=True)``.

Usage::

    pip install -r benchmarks/requirements.txt
    python benchmarks/compare.py            # about two minutes
    python benchmarks/compare.py --quick    # CI smoke, a few seconds
    python benchmarks/compare.py --strict   # exit 1 if a budget fails
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
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
    versions,
)
from limiter_workloads import saturated, saturated_table
from outcomes_http import async_variants as outcome_variants
from outcomes_http import report as outcomes_report
from outcomes_http import sync_variants as http_variants
from overhead import _three_async, _three_sync, flaky_async, flaky_sync, ok, ok_sync
from startup import (
    decoration_checks,
    decoration_table,
    decoration_times,
    import_table,
    import_times,
    memory_after_first_call,
)
from workloads import memory, memory_table, throughput, throughput_table

import resilient
from resilient.events import BulkheadRejected, EventBus

AsyncFn = Callable[[], Awaitable[Any]]
SAT_RATE, SAT_BURST = 5000.0, 10  # the saturated limiter: sub-millisecond permits, a small burst


@dataclass
class Scenario:
    """One row of the overhead table.

    Attributes:
        key: Short identifier.
        title: Row title.
        builders: Library -> builder, or the reason it has no such row.
        flaky: Guard a function failing twice then succeeding (else one returning at once).
        sync: Guard a sync function.
    """

    key: str
    title: str
    builders: dict[str, Any]
    flaky: bool = False
    sync: bool = False
    variants: dict[str, str] = field(default_factory=dict)  # lib -> variant label, once built
    missing: dict[str, str] = field(default_factory=dict)  # lib -> why there is no number


def scenarios() -> list[Scenario]:
    """Every row of the overhead table, async first."""
    return [
        Scenario("retry", "retry, success first time", pr.RETRY_ASYNC),
        Scenario("retry2", "retry, 2 failures then success, zero wait", pr.RETRY_ASYNC, flaky=True),
        Scenario("timeout", "timeout (not reached)", pr.TIMEOUT_ASYNC),
        Scenario("breaker", "circuit breaker, closed", pr.BREAKER_ASYNC),
        Scenario("bulkhead", "bulkhead, uncontended", pr.BULKHEAD_ASYNC),
        Scenario("limiter", "rate limiter, free permit", pr.RATE_ASYNC),
        Scenario("limited", "rate limiter, rejected (saturated)", pr.RATE_REJECTED_ASYNC),
        Scenario("fallback", "fallback, no failure", pr.FALLBACK_ASYNC),
        Scenario("stack", "five-policy stack", pr.STACK_ASYNC),
        Scenario("hedge", "hedge, first attempt answers at once", pr.HEDGE_ASYNC),
        Scenario("chaos", "chaos fault, switched off", pr.CHAOS_OFF_ASYNC),
        Scenario("sretry", "sync retry, success first time", pr.RETRY_SYNC, sync=True),
        Scenario("sretry2", "sync retry, 2 failures then success", pr.RETRY_SYNC, flaky=True, sync=True),
        Scenario("sbreaker", "sync circuit breaker, closed", pr.BREAKER_SYNC, sync=True),
        Scenario("schaos", "sync chaos fault, switched off", pr.CHAOS_OFF_SYNC, sync=True),
    ]


def _build(rows: list[Scenario], sync: bool) -> dict[str, Any]:
    """Build the variants of the async (or sync) rows, recording what could not be built."""
    pre = "sync " if sync else ""
    variants: dict[str, Any] = {f"{pre}bare": ok_sync if sync else ok}
    variants[f"{pre}bare x3"] = _three_sync(flaky_sync()) if sync else _three_async(flaky_async())
    for sc in rows:
        if sc.sync != sync:
            continue
        for lib in pr.LIBS:
            b = sc.builders.get(lib, pr._NO_POLICY)
            if isinstance(b, str):
                sc.missing[lib] = b
                continue
            # A fresh flaky function per variant: each keeps its own fail-fail-succeed phase.
            target: Any = ok_sync if sync else ok
            if sc.flaky:
                target = flaky_sync() if sync else flaky_async()
            try:
                fn = b(target)
            except LookupError as exc:
                sc.missing[lib] = str(exc)
                continue
            label = f"{sc.key}:{lib}"
            variants[label] = fn
            sc.variants[lib] = label
    return variants


def _shutdown_variants(sync: bool) -> dict[str, Any]:
    """The shutdown and registry rows: an open gate, a bulkhead to compare, a registry follower and its twin."""
    from resilient import Registry, bulkhead, gate, retry

    target: Any = ok_sync if sync else ok
    pre = "sync " if sync else ""
    registry = Registry([{"retry": {"attempts": 3, "backoff": 0}}])
    out = {
        f"{pre}sd gate": gate()(target),
        f"{pre}sd bulkhead": bulkhead(50)(target),
        f"{pre}sd direct": retry(attempts=3, backoff=0)(target),
        f"{pre}sd follower": registry("upstream")(target),
    }
    if not sync:
        current_task = asyncio.current_task

        async def task_lookup() -> Any:
            current_task()
            return await ok()

        out["sd task lookup"] = task_lookup
    return out


def shutdown_table(stats: dict[str, Stats], checks: list[Check]) -> str:
    """Overheads of the shutdown and registry rows, and their budgets."""
    out = []
    for pre, kind in (("", "async"), ("sync ", "sync")):
        bare = stats[f"{pre}bare"].median
        over = {k: stats[f"{pre}sd {k}"].median - bare for k in ("gate", "bulkhead", "direct", "follower")}
        lookup = 0.0 if pre else max(0.0, stats["sd task lookup"].median - bare)
        gate_ok = over["gate"] <= 1.1 * over["bulkhead"]
        follow_ok = over["follower"] <= 1.05 * over["direct"]
        out.append(
            [
                kind,
                fmt_ns(over["gate"]),
                "-" if pre else fmt_ns(lookup),
                fmt_ns(over["bulkhead"]),
                fmt_ns(over["direct"]),
                fmt_ns(over["follower"]),
                f"{verdict(gate_ok)} / {verdict(follow_ok)}",
            ]
        )
        checks.append(
            Check(
                f"{kind} open `gate()` adds at most 1.1x an uncontended `bulkhead`",
                f"{fmt_ns(over['gate'])} vs {fmt_ns(over['bulkhead'])} ({fmt_ratio(over['gate'], over['bulkhead'])})",
                gate_ok,
            )
        )
        checks.append(
            Check(
                f"{kind} `@registry(key)` follower costs what the pipeline decorated directly costs (5%)",
                f"{fmt_ns(over['follower'])} vs {fmt_ns(over['direct'])}",
                follow_ok,
            )
        )
    return table(
        [
            "calls",
            "gate, open",
            "asyncio.current_task()",
            "bulkhead(50), uncontended",
            "retry decorated directly",
            "same retry, following a registry key",
            "budgets (gate / follower)",
        ],
        out,
    )


def _event_variants() -> dict[str, AsyncFn]:
    # The same retry on an empty bus, and on a bus with one subscriber to an
    # unrelated event type (so the bus is not empty but nothing is for retry).
    quiet, busy = EventBus(), EventBus()
    busy.subscribe(lambda ev: None, BulkheadRejected)
    out: dict[str, AsyncFn] = {}
    for name, bus in (("quiet", quiet), ("busy", busy)):
        out[f"ev ok {name}"] = resilient.pipeline(resilient.retry(attempts=3, backoff=0, bus=bus), bus=bus)(
            ok
        )
        out[f"ev flaky {name}"] = resilient.pipeline(
            resilient.retry(attempts=3, backoff=0, bus=bus), bus=bus
        )(flaky_async())
    return out


# --- report --------------------------------------------------------------------------------


def _overheads(sc: Scenario, stats: dict[str, Stats]) -> dict[str, float]:
    pre = "sync " if sc.sync else ""
    base = stats[f"{pre}bare x3" if sc.flaky else f"{pre}bare"].median
    return {lib: stats[label].median - base for lib, label in sc.variants.items()}


def _fastest_peer(over: dict[str, float]) -> tuple[str, float] | None:
    peers = [(v, lib) for lib, v in over.items() if lib in pr.PEERS]
    if not peers:
        return None
    v, lib = min(peers)
    return lib, v


def overhead_table(rows: list[Scenario], stats: dict[str, Stats], checks: list[Check]) -> str:
    """The per-call overhead table; appends each row's budget to *checks*."""
    out = []
    for sc in rows:
        over = _overheads(sc, stats)
        res = over.get("resilient")
        cells = [sc.title]
        for lib in pr.LIBS:
            if lib in over:
                ratio = "" if lib == "resilient" or res is None else f" ({fmt_ratio(over[lib], res)})"
                cells.append(fmt_ns(over[lib]) + ratio)
            else:
                cells.append("n/a")
        budget = "-"
        if sc.key == "stack":
            passed = None if res is None else res <= over["stdlib"]
            budget = f"<= stdlib: {verdict(passed)}"
            measured = "not measured" if res is None else f"{fmt_ns(res)} vs stdlib {fmt_ns(over['stdlib'])}"
            checks.append(Check("five-policy stack adds no more than the stdlib stack", measured, passed))
        else:
            fastest = _fastest_peer(over)
            if fastest is not None and res is not None:
                passed = res < fastest[1]
                budget = f"< {fastest[0]}: {verdict(passed)}"
                checks.append(
                    Check(
                        f"{sc.title}: below the fastest peer",
                        f"{fmt_ns(res)} vs {fastest[0]} {fmt_ns(fastest[1])}",
                        passed,
                    )
                )
        cells.append(budget)
        out.append(cells)
    return table(["scenario (overhead per call; x = peer / resilient)", *pr.LIBS, "budget"], out)


def extra_checks(rows: list[Scenario], stats: dict[str, Stats], checks: list[Check]) -> None:
    """The issue 2/3 budgets and the timeout-vs-asyncio.timeout one."""
    by_key = {sc.key: _overheads(sc, stats) for sc in rows}

    def check(what: str, key: str, lib: str, factor: float, strict: bool = False) -> None:
        over = by_key[key]
        res, other = over.get("resilient"), over.get(lib)
        if res is None or other is None:
            checks.append(Check(what, "not measured", None))
            return
        limit = factor * other
        passed = res < limit if strict else res <= limit
        checks.append(
            Check(what, f"{fmt_ns(res)} vs {lib} {fmt_ns(other)} ({fmt_ratio(res, other)})", passed)
        )

    check("`@timeout` costs no more than `asyncio.timeout`", "timeout", "stdlib", 1.0)
    check("`@retry` success path adds at most 1.1x the hand-written loop", "retry", "stdlib", 1.1)
    check("five-policy stack adds at most 0.85x the hand-written stack", "stack", "stdlib", 0.85)
    check("sync `@retry` success path adds at most 2x the hand-written loop", "sretry", "stdlib", 2.0)
    check("closed breaker adds at most half of `circuitbreaker`'s", "breaker", "circuitbreaker", 0.5)
    check(
        "`@hedge` (first attempt answers) costs no more than an `asyncio.wait` hedge", "hedge", "stdlib", 1.0
    )


# --- disabled chaos: the layer's own cost ---------------------------------------------------

_CHAOS_ROWS = (
    ("base", "`fallback` alone (one wrapper, one layer)"),
    ("off", "`fallback` + `chaos.fault(enabled=switch)`, switch off"),
    ("false", "`fallback` + `chaos.fault(enabled=False)`"),
    ("alone", "`chaos.fault(enabled=switch)` alone, switch off"),
)


def chaos_variants(sync: bool) -> dict[str, Any]:
    """The same function under fallback, with and without a disabled chaos layer inside it."""
    pre = "schaos" if sync else "chaos"
    target: Any = ok_sync if sync else ok

    def fault(enabled: Any) -> resilient.Policy:
        return resilient.chaos.fault(ConnectionError, enabled=enabled)

    return {
        f"{pre} base": resilient.fallback(0)(target),
        f"{pre} off": resilient.pipeline(resilient.fallback(0), fault(pr.chaos_off))(target),
        f"{pre} false": resilient.pipeline(resilient.fallback(0), fault(False))(target),
        f"{pre} alone": fault(pr.chaos_off)(target),
    }


def chaos_checks(stats: dict[str, Stats], checks: list[Check]) -> str:
    """Disabled chaos: per-call time of each variant and what the chaos layer adds."""
    out = []
    for sync in (False, True):
        pre, bare = ("schaos", "sync bare") if sync else ("chaos", "bare")
        base = stats[f"{pre} base"].median
        for key, title in _CHAOS_ROWS:
            median = stats[f"{pre} {key}"].median
            if key == "alone":
                added = f"{fmt_ns(median - stats[bare].median)} over a bare call"
            elif key == "base":
                added = "-"
            else:
                added = f"{fmt_ns(median - base)} over `fallback` alone"
            out.append([("sync " if sync else "async ") + title, fmt_ns(median), added])
        layer = stats[f"{pre} off"].median - base
        checks.append(
            Check(
                f"{'sync' if sync else 'async'} chaos switched off adds at most 100 ns",
                f"{fmt_ns(layer)} (fallback + chaos vs fallback alone)",
                layer <= 100.0,
            )
        )
    return table(["variant", "per call", "chaos costs"], out)


def event_checks(stats: dict[str, Stats], checks: list[Check]) -> str:
    """Compare a policy on an empty bus with one on a bus with an unrelated subscriber."""
    out = []
    for kind, title in (("ok", "retry, success"), ("flaky", "retry, 2 failures then success")):
        quiet, busy = stats[f"ev {kind} quiet"].median, stats[f"ev {kind} busy"].median
        passed = busy - quiet <= 0.05 * quiet
        out.append([title, fmt_ns(quiet), fmt_ns(busy), f"{(busy - quiet) / quiet:+.1%}", verdict(passed)])
        checks.append(
            Check(
                f"events cost nothing measurable ({title})",
                f"{fmt_ns(quiet)} empty bus vs {fmt_ns(busy)} unrelated subscriber",
                passed,
            )
        )
    return table(["policy", "empty bus", "unrelated subscriber", "difference", "within 5%"], out)


def versions_table() -> str:
    """Which version of each library ran (or why it did not)."""
    # The distribution is resilient-policies (the import name is resilient).
    found = versions(["resilient-policies", *pr.PEERS, "wrapt"])
    found = {("resilient" if lib == "resilient-policies" else lib): ver for lib, ver in found.items()}
    out = []
    for lib, ver in found.items():
        status = "ok" if ver else "not installed"
        if lib in pr.import_errors:
            status = pr.import_errors[lib]
        out.append([lib, ver or "-", status])
    return table(["library", "version", "status"], out)


def run(
    settings: Settings, tasks: int, calls: int, trounds: int, mem_n: int, drounds: int, iruns: int
) -> list[Check]:
    """Measure everything, print the report, return the budget checks."""
    rows = scenarios()
    checks: list[Check] = []

    async def main() -> tuple[dict[str, Stats], tuple[dict[str, list[float]], dict[str, str]], Any, Any]:
        av = _build(rows, sync=False)
        av.update(_event_variants())
        av.update(_shutdown_variants(sync=False))
        av.update(chaos_variants(sync=False))
        av.update(outcome_variants())
        astats = await measure_async(av, settings)
        tp = await throughput(trounds, tasks, calls)
        mem = memory(mem_n)
        deco = decoration_times(drounds, mem_n - 1)
        return astats, tp, mem, deco

    astats, (tp, tp_missing), mem, deco = asyncio.run(main())
    sat_calls = 20 if tasks >= 1000 else 5
    sat, sat_missing = asyncio.run(saturated(trounds, 100, sat_calls, SAT_RATE, SAT_BURST))
    sv = _build(rows, sync=True)
    sv.update(_shutdown_variants(sync=True))
    sv.update(chaos_variants(sync=True))
    sv.update(http_variants())
    sstats = measure_sync(sv, settings)
    stats = {**astats, **sstats}
    mem["retry, after its first call (sync)"] = memory_after_first_call(mem_n - 1)
    imports = import_times(iruns)

    print("# resilient vs peers\n")
    print(f"{machine()}\n")
    print(versions_table())
    print(
        f"\n## Overhead per call over a bare call\n\n{settings.rounds} interleaved rounds; "
        f"median per-call time minus the bare call's (bare async call {fmt_ns(stats['bare'].median)}, "
        f"sync {fmt_ns(stats['sync bare'].median)}; for the 2-failure rows the bare cost is three "
        f"direct calls, {fmt_ns(stats['bare x3'].median)} async, {fmt_ns(stats['sync bare x3'].median)} sync).\n"
    )
    print(overhead_table(rows, stats, checks))
    extra_checks(rows, stats, checks)
    print("\n## Chaos switched off\n")
    print(chaos_checks(stats, checks))
    print("\n## Events with no subscriber\n")
    print(event_checks(stats, checks))
    print("\n## Outcomes, result checks and Retry-After parsing\n")
    print(outcomes_report(stats, checks))
    print("\n## Graceful shutdown and the registry: overhead per call over a bare call\n")
    print(shutdown_table(stats, checks))
    print(f"\n## Throughput: {tasks:,} tasks x {calls} calls through bulkhead(50) + breaker\n")
    print(throughput_table(tp, tp_missing, checks))
    print(
        f"\n## Saturated rate limiter: 100 tasks x {sat_calls} calls, waiting for permits of "
        f"{SAT_RATE:,}/s (bursts of {SAT_BURST})\n"
    )
    print(saturated_table(sat, sat_missing, 100 * sat_calls, SAT_RATE, SAT_BURST))
    print(f"\n## Memory per decorated function (tracemalloc, {mem_n - 1} functions, fresh policy each)\n")
    print(memory_table(mem))
    print(
        f"\n## Decorating: time per function ({mem_n - 1} fresh functions per sample, "
        f"{drounds} interleaved rounds, median; gc on)\n"
    )
    print(decoration_table(deco))
    decoration_checks(deco, mem, checks)
    print(f"\n## Import: fresh interpreters, median of {iruns} interleaved runs (from bytecode)\n")
    print(import_table(imports, checks))
    print("\n## Budgets\n")
    print(table(["budget", "measured", "verdict"], [[c.what, c.measured, verdict(c.passed)] for c in checks]))
    missing = sorted(
        {
            f"{lib}: {why}"
            for sc in rows
            for lib, why in sc.missing.items()
            if lib in pr.PEERS and why != pr._NO_POLICY
        }
    )
    if missing:
        print("\nNot measured (n/a): " + "; ".join(missing))
    return checks


def main(argv: Sequence[str]) -> int:
    """Run in full or ``--quick`` mode; with ``--strict`` a failed budget exits 1."""
    if is_quick(argv):
        checks = run(QUICK, tasks=100, calls=20, trounds=1, mem_n=21, drounds=3, iruns=3)
    else:
        checks = run(FULL, tasks=1000, calls=100, trounds=3, mem_n=201, drounds=15, iruns=15)
    if "--strict" in argv and any(c.passed is False for c in checks):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
