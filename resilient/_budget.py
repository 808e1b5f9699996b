"""A retry budget shared by many calls (Finagle/Envoy style)."""

from __future__ import annotations

import threading

from ._clock import Clock
from ._validate import check_clock, check_duration

__all__ = ["RetryBudget"]


class RetryBudget:
    """Caps retries to a fraction of recent calls, so retries cannot multiply load.

    Every call deposits *ratio* tokens; every retry withdraws one. The
    balance is capped at ``ratio * capacity_calls`` plus a floor of
    *min_per_second* retries per second that accrues with time, so a quiet
    service can still retry. Share one budget between the ``retry`` policies
    that call one dependency. Thread-safe.

    Args:
        ratio: Retries allowed per call, in (0, 1] (0.2 = one retry per five calls).
        min_per_second: Retries always allowed per second.
        capacity_calls: Calls whose deposits the balance can hold.
        clock: Time source (default: the system clock).
    """

    def __init__(
        self,
        *,
        ratio: float = 0.2,
        min_per_second: float = 10.0,
        capacity_calls: int = 100,
        clock: Clock | None = None,
    ) -> None:
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
            raise ValueError(f"ratio must be a number in (0, 1], got {ratio!r}")
        self.ratio = float(ratio)
        self.min_per_second = check_duration("min_per_second", min_per_second, allow_zero=True) or 0.0
        if isinstance(capacity_calls, bool) or not isinstance(capacity_calls, int) or capacity_calls < 1:
            raise ValueError(f"capacity_calls must be an int >= 1, got {capacity_calls!r}")
        self.clock = check_clock(clock)
        self._cap = max(1.0, self.ratio * capacity_calls + self.min_per_second)
        self._balance = self._cap
        self._last = self.clock.monotonic()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self.clock.monotonic()
        elapsed = now - self._last
        if elapsed > 0:
            self._balance = min(self._cap, self._balance + elapsed * self.min_per_second)
            self._last = now

    def deposit(self) -> None:
        """Record a call (its first attempt)."""
        with self._lock:
            self._balance = min(self._cap, self._balance + self.ratio)

    def try_withdraw(self) -> bool:
        """Take one retry from the budget.

        Returns:
            True if the retry may go ahead.
        """
        with self._lock:
            self._refill()
            if self._balance >= 1.0:
                self._balance -= 1.0
                return True
            return False

    @property
    def balance(self) -> float:
        """Retries currently available (fractional)."""
        with self._lock:
            self._refill()
            return self._balance

    def __repr__(self) -> str:
        return f"RetryBudget(ratio={self.ratio}, min_per_second={self.min_per_second})"
