"""The behaviours the migration guides state about tenacity and pybreaker, measured.

docs/migration/tenacity.md and docs/migration/pybreaker.md quote these
tables. Everything runs in virtual time (no waiting); the peers come from the
``bench`` extra.

- tenacity: ``stop_after_delay`` / ``stop_before_delay`` against
  ``retry(deadline=)``; what ``on_result`` exhaustion gives; the waits of
  ``wait_exponential(min=)``.
- pybreaker: ``exclude=[KeyError]`` against ``on=`` not matching ``KeyError``
  and ``ignore=KeyError``.

Usage::

    python benchmarks/migration_checks.py
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

from _harness import table, versions
from peers import peer

from resilient import CircuitOpenError, CircuitState, backoff, circuit_breaker, retry
from resilient.testing import FakeClock

# --- tenacity: time limits --------------------------------------------------------------


class VirtualTime:
    """tenacity's ``time.monotonic`` and ``sleep``, in virtual time."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        """The virtual time."""
        return self.now

    def sleep(self, seconds: float) -> None:
        """Advance the virtual time."""
        self.now += seconds


def tenacity_starts(stop: Any, attempt_seconds: float) -> tuple[list[float], float]:
    """When each attempt of an always-failing call started, and when it ended (fixed 1 s wait)."""
    tn: Any = peer("tenacity")
    vt = VirtualTime()
    real_time = tn.time
    tn.time = types.SimpleNamespace(monotonic=vt.monotonic)  # tenacity reads time.monotonic()
    starts: list[float] = []

    def op() -> None:
        starts.append(vt.now)
        vt.now += attempt_seconds
        raise ConnectionError

    try:
        tn.Retrying(stop=stop, wait=tn.wait_fixed(1), sleep=vt.sleep, reraise=True)(op)
    except ConnectionError:
        pass
    finally:
        tn.time = real_time
    return starts, vt.now


def resilient_starts(deadline: float, attempt_seconds: float) -> tuple[list[float], float]:
    """The same with ``retry(deadline=...)`` on a FakeClock."""
    clock = FakeClock()
    starts: list[float] = []

    def op() -> None:
        starts.append(clock.monotonic())
        clock.advance(attempt_seconds)
        raise ConnectionError

    try:
        retry(attempts=100, on=ConnectionError, backoff=1.0, deadline=deadline, clock=clock)(op)()
    except ConnectionError:
        pass
    return starts, clock.monotonic()


def time_limits() -> str:
    """The time-limit table."""
    tn: Any = peer("tenacity")
    rows: list[list[str]] = []
    for secs in (0.0, 0.4):
        variants = [
            ("tenacity stop_after_delay(2.5)", tenacity_starts(tn.stop_after_delay(2.5), secs)),
            ("tenacity stop_before_delay(2.5)", tenacity_starts(tn.stop_before_delay(2.5), secs)),
            ("resilient deadline=2.5", resilient_starts(2.5, secs)),
        ]
        for label, (starts, end) in variants:
            rows.append([f"{secs:g} s", label, ", ".join(f"{s:.1f}" for s in starts), f"{end:.1f}"])
    return table(["each attempt takes", "policy", "attempts started at", "ended at"], rows)


# --- tenacity: on_result exhaustion and wait_exponential(min=) -----------------------------


def on_result_exhaustion() -> str:
    """What three attempts that always return None give."""
    tn: Any = peer("tenacity")
    rows: list[list[str]] = []
    for reraise in (False, True):
        try:
            out = tn.Retrying(
                stop=tn.stop_after_attempt(3),
                retry=tn.retry_if_result(lambda r: r is None),
                sleep=lambda s: None,
                reraise=reraise,
            )(lambda: None)
            got = f"returns {out!r}"
        except tn.RetryError as exc:
            got = f"raises {type(exc).__name__}"
        rows.append([f"tenacity retry_if_result, reraise={reraise}", got])
    result = retry(attempts=3, on_result=lambda r: r is None, backoff=0.0)(lambda: None)()
    rows.append(["resilient on_result", f"returns {result!r}"])
    return table(["policy", "after 3 attempts"], rows)


def exponential_floor() -> str:
    """The waits before retries 1 to 7."""
    tn: Any = peer("tenacity")

    class State:
        def __init__(self, n: int) -> None:
            self.attempt_number = n

    floored = tn.wait_exponential(multiplier=0.5, max=10, min=2)
    plain = tn.wait_exponential(multiplier=0.5, max=10)
    strategy = backoff.exponential(initial=0.5, multiplier=2, max_delay=10, jitter="none")
    floor = backoff.FromCallable(lambda attempt, exc: max(2.0, 0.5 * 2 ** (attempt - 1)), max_delay=10)
    rows = [
        [
            "tenacity wait_exponential(multiplier=0.5, max=10, min=2)",
            [floored(State(n)) for n in range(1, 8)],
        ],
        ["tenacity wait_exponential(multiplier=0.5, max=10)", [plain(State(n)) for n in range(1, 8)]],
        [
            "resilient exponential(initial=0.5, max_delay=10, jitter='none')",
            [strategy.delay(k) for k in range(1, 8)],
        ],
        [
            "resilient FromCallable(max(2, 0.5 * 2 ** (k - 1)), max_delay=10)",
            [floor.delay(k) for k in range(1, 8)],
        ],
    ]
    return table(["strategy", "waits"], [[name, ", ".join(f"{w:g}" for w in waits)] for name, waits in rows])


# --- pybreaker: exclude= -----------------------------------------------------------------

SEQUENCE = (ConnectionError, ConnectionError, KeyError, ConnectionError)


def raising(exc: type[Exception]) -> Callable[[], None]:
    """A function raising *exc*."""

    def call() -> None:
        raise exc

    return call


def pybreaker_exclude() -> list[str]:
    """State and failure count after each call, pybreaker ``exclude=[KeyError]``."""
    pb: Any = peer("pybreaker")
    breaker = pb.CircuitBreaker(fail_max=3, reset_timeout=60, exclude=[KeyError])
    seen = []
    for exc in SEQUENCE:
        try:
            breaker.call(raising(exc))
        except (pb.CircuitBreakerError, ConnectionError, KeyError):
            pass
        seen.append(f"{breaker.current_state} {breaker.fail_counter}")
    return seen


def resilient_classification(**classification: Any) -> list[str]:
    """The same with a resilient breaker classified as given."""
    breaker = circuit_breaker(failure_threshold=3, recovery_timeout=60, clock=FakeClock(), **classification)
    seen = []
    for exc in SEQUENCE:
        try:
            breaker.call(raising(exc))
        except (CircuitOpenError, ConnectionError, KeyError):
            pass
        seen.append(f"{breaker.state.value} {breaker.stats().consecutive_failures}")
    return seen


def half_open_probe(**classification: Any) -> str:
    """The state after a half-open probe raising KeyError (resilient)."""
    clock = FakeClock()
    breaker = circuit_breaker(failure_threshold=1, recovery_timeout=60, clock=clock, **classification)
    for exc in (ConnectionError, KeyError):
        try:
            breaker.call(raising(exc))
        except (ConnectionError, KeyError):
            pass
        clock.advance(60)
    state: CircuitState = breaker.state
    return state.value


def pybreaker_half_open_probe() -> str:
    """The state after a half-open probe raising KeyError (pybreaker; its clock is wall time, so 0 s reset)."""
    pb: Any = peer("pybreaker")
    breaker = pb.CircuitBreaker(fail_max=1, reset_timeout=0, exclude=[KeyError])
    for exc in (ConnectionError, KeyError):
        try:
            breaker.call(raising(exc))
        except (pb.CircuitBreakerError, ConnectionError, KeyError):
            pass
    return str(breaker.current_state)


def excluded_exceptions() -> str:
    """The exclude= table."""
    not_key_error = {"on": lambda exc: not isinstance(exc, KeyError)}
    rows = [
        ["pybreaker exclude=[KeyError]", ", ".join(pybreaker_exclude()), pybreaker_half_open_probe()],
        [
            "resilient on=<not KeyError>",
            ", ".join(resilient_classification(**not_key_error)),
            half_open_probe(**not_key_error),
        ],
        [
            "resilient ignore=KeyError",
            ", ".join(resilient_classification(ignore=KeyError)),
            half_open_probe(ignore=KeyError),
        ],
    ]
    return table(
        [
            "breaker",
            "after ConnectionError, ConnectionError, KeyError, ConnectionError",
            "half-open probe raising KeyError",
        ],
        rows,
    )


def main() -> None:
    """Print every table."""
    print(", ".join(f"{name} {version}" for name, version in versions(["tenacity", "pybreaker"]).items()))
    for title, build in (
        ("tenacity: time limits (fixed 1 s wait, 2.5 s limit, always failing)", time_limits),
        ("tenacity: on_result exhaustion (the result is always None)", on_result_exhaustion),
        ("tenacity: wait_exponential(min=)", exponential_floor),
        ("pybreaker: exclude= (fail_max / failure_threshold 3)", excluded_exceptions),
    ):
        print(f"\n## {title}\n")
        print(build())


if __name__ == "__main__":
    main()
