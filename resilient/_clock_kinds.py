"""More clocks, loaded when first needed (not by ``import resilient``).

- :class:`ProcessClock`: a system or default clock read as
  ``time.monotonic()`` even in a virtual loop (state shared across loops).
- :func:`use_clock`: one clock for every policy given none.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Generic, TypeVar

from . import _clock
from ._clock import Clock, DefaultClock, SystemClock, TimerHandle

__all__ = [
    "ProcessClock",
    "active_clock",
    "use_clock",
]


class ProcessClock(SystemClock):
    """A system or default clock read as ``time.monotonic()`` even inside a virtual loop.

    For state shared by every thread and loop of the process (the rate
    limiter's schedule), which needs one time base: the clock a default
    clock serves (a pipeline's, :func:`use_clock`'s) if any, else
    ``time.monotonic()``. Waits go through the wrapped clock.

    Args:
        clock: A :class:`SystemClock` or :class:`DefaultClock`.
    """

    __slots__ = ("clock",)

    def __init__(self, clock: SystemClock) -> None:
        self.clock = clock

    def monotonic(self) -> float:
        """Return the served clock's time, or ``time.monotonic()``.

        Returns:
            Seconds from an arbitrary origin.
        """
        clock = self.clock
        if type(clock) is DefaultClock:
            serving = clock.serving()
            if serving is not None:
                return serving.monotonic()
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Wait *seconds* on the wrapped clock.

        Args:
            seconds: How long to wait.
        """
        await self.clock.sleep(seconds)

    def sleep_blocking(self, seconds: float) -> None:
        """Block for *seconds* on the wrapped clock.

        Args:
            seconds: How long to wait.
        """
        self.clock.sleep_blocking(seconds)

    def call_later(self, delay: float, callback: Callable[[], Any]) -> TimerHandle:
        """Run *callback* after *delay* seconds of the wrapped clock's time.

        Args:
            delay: Seconds from now.
            callback: A function of no arguments.

        Returns:
            A handle whose ``cancel()`` unschedules the callback.
        """
        return self.clock.call_later(delay, callback)

    def __repr__(self) -> str:
        return f"ProcessClock({self.clock!r})"


def active_clock(clock: Clock) -> Clock:
    """Return the clock that serves *clock*: itself unless it is a DefaultClock delegating."""
    if type(clock) is DefaultClock:
        serving = clock.serving()
        if serving is not None:
            return serving
    return clock


C = TypeVar("C", bound="Clock | None")


class _ClockOverride(Generic[C]):
    """Returned by :func:`use_clock`; restores the previous clock on exit."""

    __slots__ = ("_previous", "clock")

    def __init__(self, clock: C, previous: Clock | None) -> None:
        self.clock = clock
        self._previous = previous

    def __enter__(self) -> C:
        return self.clock

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with _clock._override_lock:
            _clock._override = self._previous


def use_clock(clock: C) -> _ClockOverride[C]:
    """Make every policy given no clock use *clock* (None: the system clock again).

    Policies built with ``clock=`` keep theirs; every other one (module-level
    decorators in the code under test included, built before or after this
    call) reads and waits on *clock* from now on: retry waits, timeouts,
    breaker recovery, bulkhead queue timeouts, deadlines and event times.
    Process-wide and thread-safe; as a context manager it restores the
    previous clock on exit::

        with use_clock(FakeClock()) as clock:
            ...

    Switching clocks changes the time base under state that policies keep
    (an open breaker's recovery time): reset them (:func:`reset_policies`)
    when the clock changes.

    Args:
        clock: Any :class:`~resilient.Clock`, or None for the system clock.

    Returns:
        A context manager giving *clock* and restoring the previous one on exit.

    Raises:
        TypeError: *clock* does not provide ``monotonic()`` and ``sleep()``.
    """
    if clock is not None:
        from ._validate import check_clock

        check_clock(clock)
    with _clock._override_lock:
        previous, _clock._override = _clock._override, clock
    return _ClockOverride(clock, previous)
