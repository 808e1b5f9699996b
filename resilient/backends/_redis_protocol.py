"""The wire format between :class:`RedisBackend` and its Lua script.

The script takes the four keys, the step name, fifteen configuration
arguments (:func:`script_config`), the caller's restore hint (three integers,
see :func:`hint`) and the step's own; it replies with a flat list of integers
that the functions here decode. Every reply starts with the same header
(:data:`HEADER` integers): state, generation, previous and next state (-1: no
transition), the state's epoch, the earliest server time its keys can
expire, and the server time an OPEN state's open period ends (0 otherwise).
"""

from __future__ import annotations

import math
import os
import socket
import threading
from typing import Any

from resilient._breaker_stats import TIME_BUCKETS
from resilient._state import CircuitState
from resilient.backends._base import BreakerConfig, BreakerStats, Rejection, Transition

__all__ = [
    "HEADER",
    "ISOLATED",
    "NO_HINT",
    "OPEN",
    "STATES",
    "SuccessTally",
    "default_reporter",
    "encode",
    "hint",
    "rejection_of",
    "script_config",
    "stats_of",
    "transition_of",
]

STATES = (CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN, CircuitState.ISOLATED)
"""State codes of the script, in order."""
OPEN, ISOLATED = 1, 3
"""The script's codes for OPEN and ISOLATED (the states a hint restores)."""
HEADER = 7
"""Integers every reply starts with; a step's own follow."""
EPOCH, EXPIRY, UNTIL = 4, 5, 6
"""Where the header holds the state's epoch, earliest expiry and open period's end (server ms)."""
NO_HINT = (b"0", b"0", b"0")
"""The hint of a caller whose last view was neither OPEN nor ISOLATED."""


def default_reporter() -> str:
    """Return this process's default reporter id, ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def script_config(
    config: BreakerConfig,
    *,
    probe_lease: float,
    key_ttl: float,
    min_reporters: int,
    reporter_ttl: float | None,
    reporter: str,
) -> tuple[Any, ...]:
    """Return ARGV[2..16] of the script (times in milliseconds, 0 for "off").

    Args:
        config: The breaker's thresholds and windows.
        probe_lease: Seconds a probe permit lives.
        key_ttl: Seconds unused keys live (raised to outlive the state they hold).
        min_reporters: Distinct reporters needed to open.
        reporter_ttl: Seconds a reporter counts (None: the time window, else 60).
        reporter: This process's reporter id.

    Returns:
        The arguments, in the script's order.
    """
    if reporter_ttl is None:
        reporter_ttl = config.window_seconds if config.window_seconds is not None else 60.0
    # Keys must outlive an OPEN period plus a probe lease, and a time window.
    ttl = max(key_ttl, 2 * config.recovery_timeout + probe_lease, 2 * (config.window_seconds or 0.0))
    return (
        config.failure_threshold,
        config.recovery_timeout * 1000.0,
        config.half_open_max_calls,
        config.success_threshold,
        config.failure_rate or 0,
        config.window,
        (config.window_seconds or 0.0) * 1000.0,
        TIME_BUCKETS,
        config.minimum_calls,
        config.slow_call_rate if config.slow_call_duration is not None else 0,
        probe_lease * 1000.0,
        math.ceil(ttl * 1000.0),
        min_reporters,
        math.ceil(reporter_ttl * 1000.0),
        reporter,
    )


def encode(values: tuple[Any, ...]) -> tuple[bytes, ...]:
    """Encode arguments as redis-py would (``str()``, UTF-8), once instead of per call."""
    return tuple(v if isinstance(v, bytes) else str(v).encode("utf-8") for v in values)


def hint(view: list[Any] | None, restored: tuple[int, ...]) -> tuple[bytes, ...]:
    """Return the restore hint for a caller whose last reply was *view*.

    A caller that last saw the breaker in one of the *restored* states
    (ISOLATED, and OPEN if the backend restores open periods) sends that
    state's epoch and earliest expiry (and for OPEN, the end of its open
    period) with each step, so that the script can restore the state if it
    was lost (not expired) since.
    """
    if view is None or view[0] not in restored:
        return NO_HINT
    until = view[UNTIL] if view[0] == OPEN else 0
    return (str(view[EPOCH]).encode(), str(view[EXPIRY]).encode(), str(until).encode())


def transition_of(reply: list[Any]) -> Transition | None:
    """Decode the transition a step caused (reply items 2 and 3), if any."""
    previous = reply[2]
    return None if previous < 0 else Transition(STATES[previous], STATES[reply[3]])


def rejection_of(reply: list[Any]) -> Rejection:
    """Decode a refused ``acquire`` (retry_after in microseconds, -1 for unknown)."""
    retry = reply[HEADER + 3]
    return Rejection(STATES[reply[0]], None if retry < 0 else retry / 1e6)


def stats_of(reply: list[Any]) -> BreakerStats:
    """Decode the ``stats`` step's reply."""
    calls, failures, slow, consecutive, probes, successes, retry = reply[HEADER:]
    return BreakerStats(
        state=STATES[reply[0]],
        generation=reply[1],
        calls=calls,
        failures=failures,
        slow_calls=slow,
        consecutive_failures=consecutive,
        probes_in_flight=probes,
        probe_successes=successes,
        retry_after=None if retry < 0 else retry / 1e6,
    )


class SuccessTally:
    """CLOSED successes not sent yet: they ride along with the next step.

    Only the newest generation is kept: successes of an older one would be
    ignored by the server anyway (it has left that generation).
    """

    __slots__ = ("_count", "_generation", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation = -1
        self._count = 0

    def add(self, generation: int) -> None:
        """Count one success of a call admitted in *generation*."""
        with self._lock:
            if generation == self._generation:
                self._count += 1
            elif generation > self._generation:
                self._generation = generation
                self._count = 1

    def restore(self, generation: int, count: int) -> None:
        """Count again *count* successes taken for a step that never reached Redis."""
        if not count:
            return
        with self._lock:
            if generation == self._generation:
                self._count += count
            elif generation > self._generation:
                self._generation = generation
                self._count = count

    def take(self) -> tuple[int, int]:
        """Return ``(generation, count)`` and start counting from zero."""
        if not self._count:
            return self._generation, 0
        with self._lock:
            taken = self._generation, self._count
            self._count = 0
            return taken
