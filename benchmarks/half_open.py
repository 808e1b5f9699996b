"""How many waiting callers a half-open breaker lets through (docs/motivation.md, section 1).

A breaker is opened by one failure; its recovery timeout (50 ms) passes;
then 8 callers arrive together, each making a 50 ms call that succeeds (or,
in the second scenario, fails). For each library the table reports how many
of them reached the dependency, how many ran at the same time, what the
callers got, and the wall time. Real time (about a second in all): this is a
measurement, not a test.

- pybreaker (sync, one thread per caller): ``CircuitBreaker.call`` holds the
  breaker's lock for the whole call, so callers enter one at a time.
- purgatory (asyncio): ``async with await factory.get_breaker(name):``.
- resilient, sync (threads) and async (tasks), ``half_open_max_calls=1``.

Usage::

    python benchmarks/half_open.py
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from _harness import machine, table, versions
from peers import peer

import resilient

CALLERS = 8
CALL = 0.05
RECOVERY = 0.05


@dataclass
class Run:
    """What the callers of one scenario saw."""

    reached: int = 0
    undecided: int = 0  # reached it before any call had ended: while the trial was undecided
    ended: int = 0
    inside: int = 0
    peak: int = 0
    outcomes: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def enter(self) -> None:
        """A caller reached the dependency."""
        with self.lock:
            self.reached += 1
            if self.ended == 0:
                self.undecided += 1
            self.inside += 1
            self.peak = max(self.peak, self.inside)

    def leave(self) -> None:
        """A caller's dependency call ended."""
        with self.lock:
            self.inside -= 1
            self.ended += 1

    def row(self, library: str, trial: str) -> list[str]:
        """The table row."""
        counts: dict[str, int] = {}
        for outcome in self.outcomes:
            counts[outcome] = counts.get(outcome, 0) + 1
        got = ", ".join(f"{n} {o}" for o, n in sorted(counts.items()))
        return [
            library,
            trial,
            str(self.undecided),
            str(self.reached),
            str(self.peak),
            got,
            f"{self.elapsed * 1000:.0f} ms",
        ]


def threads(caller: Callable[[], str], run: Run) -> None:
    """Run CALLERS threads of *caller* released together; record outcomes and wall time."""
    barrier = threading.Barrier(CALLERS)

    def body() -> None:
        barrier.wait()
        outcome = caller()
        with run.lock:
            run.outcomes.append(outcome)

    started = time.perf_counter()
    workers = [threading.Thread(target=body) for _ in range(CALLERS)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    run.elapsed = time.perf_counter() - started


def pybreaker_sync(fails: bool) -> Run:
    """pybreaker 1.x, threads."""
    pb: Any = peer("pybreaker")
    breaker = pb.CircuitBreaker(fail_max=1, reset_timeout=RECOVERY)
    run = Run()

    def opening() -> None:
        raise ConnectionError

    def dependency() -> str:
        run.enter()
        time.sleep(CALL)
        run.leave()
        if fails:
            raise ConnectionError
        return "ok"

    def caller() -> str:
        try:
            return str(breaker.call(dependency))
        except pb.CircuitBreakerError:
            return "rejected"
        except ConnectionError:
            return "failed"

    try:
        breaker.call(opening)
    except (ConnectionError, pb.CircuitBreakerError):
        pass
    time.sleep(RECOVERY * 1.2)
    threads(caller, run)
    return run


def resilient_sync(fails: bool) -> Run:
    """resilient, threads."""
    breaker = resilient.circuit_breaker(failure_threshold=1, recovery_timeout=RECOVERY)
    run = Run()

    def opening() -> None:
        raise ConnectionError

    def dependency() -> str:
        run.enter()
        time.sleep(CALL)
        run.leave()
        if fails:
            raise ConnectionError
        return "ok"

    def caller() -> str:
        try:
            return str(breaker.call(dependency))
        except resilient.CircuitOpenError:
            return "rejected"
        except ConnectionError:
            return "failed"

    try:
        breaker.call(opening)
    except ConnectionError:
        pass
    time.sleep(RECOVERY * 1.2)
    threads(caller, run)
    return run


async def gathered(caller: Callable[[], Any], run: Run) -> None:
    """Run CALLERS tasks of *caller* together; record outcomes and wall time."""
    started = time.perf_counter()
    run.outcomes.extend(await asyncio.gather(*(caller() for _ in range(CALLERS))))
    run.elapsed = time.perf_counter() - started


async def purgatory_async(fails: bool) -> Run:
    """purgatory 3.x, asyncio."""
    factory: Any = peer("purgatory").AsyncCircuitBreakerFactory(default_threshold=1, default_ttl=RECOVERY)
    run = Run()

    async def caller() -> str:
        try:
            async with await factory.get_breaker("dependency"):
                run.enter()
                await asyncio.sleep(CALL)
                run.leave()
                if fails:
                    raise ConnectionError
            return "ok"
        except ConnectionError:
            return "failed"
        except Exception as exc:  # purgatory's own rejection error
            return f"rejected ({type(exc).__name__})"

    try:
        async with await factory.get_breaker("dependency"):
            raise ConnectionError
    except ConnectionError:
        pass
    await asyncio.sleep(RECOVERY * 1.2)
    await gathered(caller, run)
    return run


async def resilient_async(fails: bool) -> Run:
    """resilient, asyncio."""
    breaker = resilient.circuit_breaker(failure_threshold=1, recovery_timeout=RECOVERY)
    run = Run()

    async def dependency() -> str:
        run.enter()
        await asyncio.sleep(CALL)
        run.leave()
        if fails:
            raise ConnectionError
        return "ok"

    async def caller() -> str:
        try:
            return str(await breaker.call(dependency))
        except resilient.CircuitOpenError:
            return "rejected"
        except ConnectionError:
            return "failed"

    async def opening() -> None:
        raise ConnectionError

    try:
        await breaker.call(opening)
    except ConnectionError:
        pass
    await asyncio.sleep(RECOVERY * 1.2)
    await gathered(caller, run)
    return run


def main() -> None:
    """Measure every library in both scenarios and print the table."""
    print(machine())
    print(", ".join(f"{name} {version}" for name, version in versions(["pybreaker", "purgatory"]).items()))
    print(
        f"{CALLERS} callers arrive once the {RECOVERY * 1000:.0f} ms recovery timeout passed; "
        f"each call takes {CALL * 1000:.0f} ms."
    )
    print()
    rows: list[list[str]] = []
    for fails in (False, True):
        trial = "fails" if fails else "succeeds"
        rows.append(pybreaker_sync(fails).row("pybreaker (threads)", trial))
        rows.append(asyncio.run(purgatory_async(fails)).row("purgatory (asyncio)", trial))
        rows.append(resilient_sync(fails).row("resilient (threads)", trial))
        rows.append(asyncio.run(resilient_async(fails)).row("resilient (asyncio)", trial))
    headers = [
        "library",
        "the calls",
        "reached it while the trial was undecided",
        "reached it in all",
        "at once (peak)",
        "callers got",
        "wall time",
    ]
    print(table(headers, rows))


if __name__ == "__main__":
    main()
