"""A retry budget shared by many calls (Finagle/Envoy style)."""

from __future__ import annotations

import threading

from ._clock import Clock
from ._numbers import describe
from ._tracking import track
from ._validate import check_clock, check_fraction, check_int, check_number

__all__ = ["RetryBudget", "check_budget"]


def check_budget(budget: RetryBudget | None) -> RetryBudget | None:
    """Return *budget* if it is None or works as a :class:`RetryBudget` (``retry``'s and ``hedge``'s check).

    Any object with callable ``deposit`` and ``try_withdraw`` methods is
    accepted, so a budget of one's own can stand in.

    Returns:
        *budget*, unchanged.

    Raises:
        TypeError: *budget* lacks ``deposit`` or ``try_withdraw``.
    """
    if budget is not None and not (
        callable(getattr(budget, "try_withdraw", None)) and callable(getattr(budget, "deposit", None))
    ):
        raise TypeError(f"budget must be a RetryBudget (deposit/try_withdraw), got {describe(budget)}")
    return budget


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

    Raises:
        TypeError: A parameter has the wrong type.
        ValueError: *ratio* is outside (0, 1], *min_per_second* is negative,
            NaN or infinite, or *capacity_calls* is < 1 or beyond a float.
    """

    def __init__(
        self,
        *,
        ratio: float = 0.2,
        min_per_second: float = 10.0,
        capacity_calls: int = 100,
        clock: Clock | None = None,
    ) -> None:
        self.ratio = check_fraction("ratio", ratio)
        self.min_per_second = check_number("min_per_second", min_per_second, 0.0)
        self.capacity_calls = check_int("capacity_calls", capacity_calls, minimum=1)
        self.clock = check_clock(clock)
        try:
            deposits = self.ratio * self.capacity_calls
        except OverflowError:  # an int beyond any float
            raise ValueError(
                f"capacity_calls must fit a float, got an integer of {self.capacity_calls.bit_length()} bits"
            ) from None
        self._cap = max(1.0, deposits + self.min_per_second)
        self._balance = self._cap
        self._last = self.clock.monotonic()
        self._lock = threading.Lock()
        track(self)  # weakly, for resilient.testing.reset_policies()

    def _reset_for_tests(self) -> None:
        # Full again, timed from now (the clock may have changed).
        with self._lock:
            self._balance = self._cap
            self._last = self.clock.monotonic()

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
