"""Time sources.

Every policy reads time from a :class:`Clock`. A policy given none gets a
:class:`DefaultClock` of its own: the system clock, unless a pipeline gave
it a clock (``pipeline(..., clock=c)``) or a test installed one for every
such policy (:func:`use_clock`). The system clock reads the time the code
around it runs on:

- inside a running event loop whose clock is virtual (looptime and other
  loops overriding ``loop.time()`` in Python), that loop's ``time()``, so
  deadlines, ``remaining()`` and breaker recovery agree with the loop's
  timers;
- otherwise ``time.monotonic``, looked up at call time, so that freezegun
  (``real_asyncio=True``) or a monkeypatch can move it. A replaced
  ``time.monotonic`` wins over a virtual loop.

Tests inject :class:`resilient.testing.FakeClock` (``_fakeclock.py``) and
never wait for real.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from types import BuiltinFunctionType, FunctionType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ._lazy import LazyModule

if TYPE_CHECKING:
    import asyncio
else:
    asyncio = LazyModule("asyncio", globals())  # imported on first use

__all__ = [
    "MONOTONIC_CLOCK",
    "SYSTEM_CLOCK",
    "Clock",
    "DefaultClock",
    "LoopClock",
    "MonotonicClock",
    "SystemClock",
    "TimerHandle",
    "blocking_sleep",
    "call_later",
]


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


def _probe_running_loop() -> Any:
    # Until asyncio is imported no loop can run (and `import resilient` must
    # not import it): look for it, and once it is there use its C lookup.
    events = sys.modules.get("asyncio.events")
    if events is None:
        return None
    global _running_loop
    _running_loop = events._get_running_loop
    return _running_loop()


_running_loop: Callable[[], Any] = _probe_running_loop
"""The running event loop of this thread, or None (``asyncio._get_running_loop``)."""

_virtual: dict[type, bool] = {}
"""Per event loop class: does its ``time()`` keep a clock of its own?"""


def _is_virtual(cls: type) -> bool:
    # A loop keeps its own time when a Python class overrides time(): looptime
    # and friends. The stock loops read time.monotonic; C loops (uvloop) read
    # the same clock through a cache of the loop's iteration.
    stock = sys.modules["asyncio.base_events"].BaseEventLoop.time
    now = getattr(cls, "time", None)
    virtual = _virtual[cls] = isinstance(now, FunctionType) and now is not stock
    return virtual


class SystemClock:
    """The real clock: the running loop's time (or ``time.monotonic``) and ``asyncio.sleep``.

    Inside an event loop that keeps virtual time (looptime), time is the
    loop's ``time()``, so policies agree with the loop's timers; elsewhere
    (sync code, standard loops, uvloop) it is ``time.monotonic()``, looked up
    at call time so that freezegun or a monkeypatch can move it. A replaced
    ``time.monotonic`` is followed even inside a virtual loop.
    """

    __slots__ = ()

    def monotonic(self) -> float:
        """Return the current time of the running loop, or ``time.monotonic()``.

        Returns:
            Seconds from an arbitrary origin.
        """
        loop = _running_loop()
        if loop is not None:
            virtual = _virtual.get(type(loop))
            if virtual is None:
                virtual = _is_virtual(type(loop))
            if virtual and type(time.monotonic) is BuiltinFunctionType:
                now: float = loop.time()
                return now
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


class MonotonicClock(SystemClock):
    """The system clock where no loop keeps time of its own: ``time.monotonic()``.

    A timeout's deadline is measured on it when the loop it was set on reads
    ``time.monotonic`` too, so reading it later (from any thread) costs no
    loop lookup.
    """

    __slots__ = ()

    def monotonic(self) -> float:
        """Return ``time.monotonic()``, looked up at call time.

        Returns:
            Seconds from an arbitrary origin.
        """
        return time.monotonic()

    def __repr__(self) -> str:
        return "MonotonicClock()"


MONOTONIC_CLOCK = MonotonicClock()


class LoopClock(SystemClock):
    """The system clock pinned to one virtual-time loop: its ``time()``, from any thread.

    Args:
        loop: The event loop whose time this clock reads.
    """

    __slots__ = ("loop",)

    def __init__(self, loop: Any) -> None:
        self.loop = loop

    def monotonic(self) -> float:
        """Return the loop's time.

        Returns:
            Seconds from the loop's origin.
        """
        now: float = self.loop.time()
        return now

    def __repr__(self) -> str:
        return f"LoopClock({self.loop!r})"


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


# --- one clock for every policy given none ---------------------------------------

_override: Clock | None = None
"""The clock :func:`use_clock` installed for every policy given none, or None."""
_override_lock = threading.Lock()


class DefaultClock(SystemClock):
    """The clock of a policy given none: the system clock, unless told otherwise.

    Each such policy gets its own, so that ``pipeline(..., clock=c)`` can
    hand *c* to the policies it holds (:attr:`target`) without touching
    policies given a clock explicitly. Reads go to the target if set, else
    to the clock :func:`use_clock` installed, else to the system clock.
    """

    __slots__ = ("target",)

    def __init__(self) -> None:
        self.target: Clock | None = None

    def serving(self) -> Clock | None:
        """Return the clock this one delegates to, or None for the system clock."""
        target = self.target
        return _override if target is None else target

    def monotonic(self) -> float:
        """Return the serving clock's time (see :class:`SystemClock` for the system clock's).

        Returns:
            Seconds from an arbitrary origin.
        """
        clock = self.target
        if clock is None:
            clock = _override
            if clock is None:  # the system clock, inlined (SystemClock.monotonic)
                loop = _running_loop()
                if loop is not None:
                    virtual = _virtual.get(type(loop))
                    if virtual is None:
                        virtual = _is_virtual(type(loop))
                    if virtual and type(time.monotonic) is BuiltinFunctionType:
                        now: float = loop.time()
                        return now
                return time.monotonic()
        return clock.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Wait *seconds* on the serving clock.

        Args:
            seconds: How long to wait.
        """
        clock = self.serving()
        if clock is None:
            await asyncio.sleep(seconds)
        else:
            await clock.sleep(seconds)

    def sleep_blocking(self, seconds: float) -> None:
        """Block for *seconds* on the serving clock (``time.sleep`` if it cannot).

        Args:
            seconds: How long to wait.
        """
        clock = self.serving()
        if clock is None:
            time.sleep(seconds)
        else:
            blocking_sleep(clock, seconds)

    def call_later(self, delay: float, callback: Callable[[], Any]) -> TimerHandle:
        """Run *callback* after *delay* seconds of the serving clock's time.

        Args:
            delay: Seconds from now.
            callback: A function of no arguments.

        Returns:
            A handle whose ``cancel()`` unschedules the callback.
        """
        clock = self.serving()
        if clock is None:
            return asyncio.get_running_loop().call_later(delay, callback)
        return call_later(clock, delay, callback)

    def __repr__(self) -> str:
        clock = self.serving()
        return "DefaultClock()" if clock is None else f"DefaultClock(serving={clock!r})"
