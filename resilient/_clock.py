"""Time sources.

Every policy reads time from a :class:`Clock`. The default,
:data:`SYSTEM_CLOCK`, looks ``time.monotonic`` up at call time so that
freezegun (``real_asyncio=True``) can move it; tests inject
:class:`resilient.testing.FakeClock` instead and never wait for real.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock", "TimerHandle"]


@runtime_checkable
class TimerHandle(Protocol):
    """A scheduled callback that can be cancelled."""

    def cancel(self) -> None:
        """Cancel the callback if it has not run yet."""


@runtime_checkable
class Clock(Protocol):
    """Where policies read the time and how they wait.

    Only :meth:`monotonic` and :meth:`sleep` are required. A clock may also
    provide ``sleep_blocking(seconds)`` (used by ``retry`` around sync
    functions; without it ``time.sleep`` is used) and
    ``call_later(delay, callback) -> TimerHandle`` (used by ``timeout``;
    without it the running event loop's timer is used).
    """

    def monotonic(self) -> float:
        """Return the current monotonic time in seconds."""

    async def sleep(self, seconds: float) -> None:
        """Wait *seconds* without blocking the event loop."""


class SystemClock:
    """The real clock: ``time.monotonic`` and ``asyncio.sleep``."""

    __slots__ = ()

    def monotonic(self) -> float:
        """Return ``time.monotonic()``, looked up at call time.

        Returns:
            Seconds from an arbitrary origin.
        """
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Wait *seconds* with ``asyncio.sleep``.

        Args:
            seconds: How long to wait.
        """
        await asyncio.sleep(seconds)

    def sleep_blocking(self, seconds: float) -> None:
        """Block the thread for *seconds* with ``time.sleep``.

        Args:
            seconds: How long to wait.
        """
        time.sleep(seconds)

    def call_later(self, delay: float, callback: Callable[[], Any]) -> TimerHandle:
        """Run *callback* after *delay* seconds on the running event loop.

        Args:
            delay: Seconds from now.
            callback: A function of no arguments.

        Returns:
            A handle whose ``cancel()`` unschedules the callback.
        """
        return asyncio.get_running_loop().call_later(delay, callback)

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK = SystemClock()


def blocking_sleep(clock: Clock, seconds: float) -> None:
    """Block for *seconds* using the clock's ``sleep_blocking`` if it has one."""
    sleeper = getattr(clock, "sleep_blocking", None)
    if sleeper is None:
        time.sleep(seconds)
    else:
        sleeper(seconds)


def call_later(clock: Clock, delay: float, callback: Callable[[], Any]) -> TimerHandle:
    """Schedule *callback* after *delay* seconds of the clock's time."""
    scheduler = getattr(clock, "call_later", None)
    if scheduler is None:
        handle: TimerHandle = asyncio.get_running_loop().call_later(delay, callback)
        return handle
    result: TimerHandle = scheduler(delay, callback)
    return result
