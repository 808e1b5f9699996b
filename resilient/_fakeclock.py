"""The virtual clock, public as :class:`resilient.testing.FakeClock`."""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ._lazy import LazyModule

if TYPE_CHECKING:
    import asyncio
else:
    asyncio = LazyModule("asyncio", globals())  # imported on first use

__all__ = ["FakeClock"]


class _FakeTimer:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], Any]) -> None:
        self.when = when
        self.callback: Callable[[], Any] | None = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        self.callback = None


class FakeClock:
    """A clock whose time moves only when told (or when something sleeps on it).

    ``await clock.sleep(s)`` and ``clock.sleep_blocking(s)`` advance the time
    by *s* at once, firing timers due on the way in order, and yield to the
    event loop after each one so a cancellation it caused is delivered.
    Thread-safe.

    Args:
        start: The initial reading of :meth:`monotonic`.

    Attributes:
        sleeps: Every duration passed to a sleep, in order (handy to assert
            the backoff sequence).
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._timers: list[tuple[float, int, _FakeTimer]] = []
        self._seq = itertools.count()
        self._lock = threading.RLock()
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        """Return the virtual time in seconds."""
        return self._now

    def time(self) -> float:
        """Alias of :meth:`monotonic`."""
        return self._now

    def _seconds(self, seconds: float | timedelta) -> float:
        if isinstance(seconds, timedelta):
            seconds = seconds.total_seconds()
        if seconds != seconds or seconds < 0:  # NaN or negative
            raise ValueError(f"seconds must be >= 0, got {seconds!r}")
        if seconds == float("inf"):
            # No reading can follow infinity: every policy's arithmetic would be NaN.
            raise ValueError("seconds must be finite, got inf")
        return float(seconds)

    def _step(self, target: float) -> bool:
        """Advance to the next due timer (<= target) or to target; True if a timer fired."""
        callback = None
        timer = None
        try:
            with self._lock:
                timers = self._timers
                # Cancelled and fired timers have no callback; they leave the heap here.
                while timers and timers[0][2].callback is None:
                    heapq.heappop(timers)
                if not timers or timers[0][0] > target:
                    if target > self._now:
                        self._now = target
                    return False
                when, _, timer = timers[0]
                if when > self._now:
                    self._now = when
                callback = timer.callback
                timer.callback = None  # claimed: no other step runs it
        except BaseException:
            if timer is not None and callback is not None:
                timer.callback = callback  # interrupted before running it: put it back
            raise
        if callback is not None:
            callback()
        return True

    def advance(self, seconds: float | timedelta) -> None:
        """Move time forward by *seconds*, firing due timers in order.

        Args:
            seconds: How far (>= 0).

        Raises:
            ValueError: *seconds* is negative or NaN.
        """
        s = self._seconds(seconds)
        # Held across the whole advance (re-entrant, so callbacks may use the
        # clock): advances from several threads add up instead of racing on
        # the starting time.
        with self._lock:
            target = self._now + s
            while self._step(target):
                pass

    async def sleep(self, seconds: float) -> None:
        """Advance virtual time by *seconds* and yield to the loop.

        Args:
            seconds: How long to "wait".
        """
        s = self._seconds(seconds)
        self.sleeps.append(s)
        target = self._now + s
        while self._step(target):
            # Let a cancellation the timer requested reach its task.
            await asyncio.sleep(0)
        await asyncio.sleep(0)

    def sleep_blocking(self, seconds: float) -> None:
        """Advance virtual time by *seconds* without blocking.

        Args:
            seconds: How long to "wait".
        """
        s = self._seconds(seconds)
        self.sleeps.append(s)
        self.advance(s)

    def call_later(self, delay: float, callback: Callable[[], Any]) -> _FakeTimer:
        """Run *callback* once virtual time has advanced *delay* seconds.

        Args:
            delay: Seconds of virtual time from now (<= 0: on the next advance).
            callback: A function of no arguments.

        Returns:
            A handle with ``cancel()``.
        """
        with self._lock:
            timer = _FakeTimer(self._now + max(0.0, delay), callback)
            heapq.heappush(self._timers, (timer.when, next(self._seq), timer))
        if delay <= 0:
            try:
                asyncio.get_running_loop().call_soon(self._fire_due)
            except RuntimeError:
                pass
        return timer

    def _fire_due(self) -> None:
        while self._step(self._now):
            pass

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now})"
