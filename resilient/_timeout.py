"""``timeout``: cancel the work when it runs too long, in the caller's task.

The mechanism is ``asyncio.timeout``'s, driven by the policy's clock: at
expiry the task is cancelled; on the way out the cancellation is turned into
:class:`TimeoutExceededError` only if no other cancellation arrived
(``task.uncancel()`` back to the count seen at entry). So an outer
cancellation is never reported as a timeout, even one that lands right after
expiry, and the task's ``cancelling()`` count is restored.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from types import BuiltinFunctionType, TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

from . import _clock
from ._clock import (
    MONOTONIC_CLOCK,
    Clock,
    DefaultClock,
    LoopClock,
    SystemClock,
    TimerHandle,
    _is_virtual,
    _virtual,
)
from ._context import CallContext, Deadline, _deadline
from ._errors import TimeoutExceededError
from ._events import Event, EventBus, TimeoutElapsed
from ._lazy import LazyModule
from ._pipeline import Args, AsyncLayer, AsyncOnlyPolicy, Kwargs, SyncLayer
from ._scopes import pop_scope, push_scope
from ._validate import check_bus, check_clock, check_duration, check_name

if TYPE_CHECKING:
    import asyncio
else:
    asyncio = LazyModule("asyncio", globals())  # imported on first use

__all__ = ["Timeout", "timeout"]


class _Scope(Deadline):
    """One entry into a timeout: its task, timer and deadline token.

    It is also the ambient :class:`Deadline` it sets, one allocation fewer
    on the hot path.
    """

    __slots__ = ("cancelling", "closed", "expired", "handle", "token")

    task: asyncio.Task[Any]

    def __init__(self, task: asyncio.Task[Any], at: float, clock: Clock, seconds: float) -> None:
        self.at = at
        self.clock = clock
        self.task = task
        #: What an expiry reports: the length of the timeout whose deadline
        #: this entry's timer enforces (its own, or an enclosing one's).
        self.seconds = seconds
        self.cancelling = task.cancelling()
        self.expired = False
        self.closed = False
        self.handle: TimerHandle | None = None
        self.token: Any = None

    def expire(self) -> None:
        """The timer fired: cancel the task (at its next suspension if it is running)."""
        task = self.task
        loop = task.get_loop()
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is loop and asyncio.current_task(loop) is not task:
            self.handle = None
            self.cancel()
        else:
            # Fired from inside the task itself (a fake clock advanced by the
            # body) or from another thread. Cancelling a running task leaves a
            # request that only its next await delivers; if the body returned
            # first, that stray request would cancel the caller later (and
            # Python < 3.13 cannot withdraw it). Deferring to the loop lets
            # _exit withdraw it by cancelling this handle.
            self.handle = loop.call_soon_threadsafe(self.cancel)

    def cancel(self) -> None:
        self.handle = None
        if not self.closed:
            self.expired = True
            self.task.cancel()


def _arm(
    scope: _Scope,
    loop: asyncio.AbstractEventLoop,
    seconds: float,
    schedule: Callable[[float, Callable[[], Any]], TimerHandle] | None,
) -> None:
    """Start *scope*'s timer: the loop's, or the clock's own."""
    if schedule is None:
        scope.handle = loop.call_later(seconds, scope.expire)
    else:
        scope.handle = schedule(seconds, scope.expire)


class Timeout(AsyncOnlyPolicy):
    """The policy returned by :func:`timeout`; also ``async with timeout(s):``."""

    kind: ClassVar[str] = "timeout"
    emits: ClassVar[tuple[type[Event], ...]] = (TimeoutElapsed,)

    def __init__(
        self,
        seconds: float | timedelta,
        *,
        name: str | None = None,
        clock: Clock | None = None,
        bus: EventBus | None = None,
    ) -> None:
        secs = check_duration("seconds", seconds)
        assert secs is not None
        self.seconds: float = secs
        self.name = check_name(name)
        self.clock = check_clock(clock)
        self.bus = check_bus(bus)
        # The system clock's timer is the loop's; calling it directly saves a
        # lookup per call. Other clocks schedule on their own time if they can.
        # A default clock is the system clock unless it serves another one
        # (a pipeline's or use_clock's): _enter looks that up per call.
        self._default = type(self.clock) is DefaultClock
        self._system = self._default or type(self.clock) is SystemClock
        scheduler = getattr(self.clock, "call_later", None)
        self._schedule: Callable[[float, Callable[[], Any]], TimerHandle] | None = (
            None if self._system or scheduler is None else scheduler
        )

    def __repr__(self) -> str:
        return f"timeout({self.seconds!r})"

    def _enter(self) -> _Scope:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("timeout() must be used inside an asyncio task")
        clock = self.clock
        schedule = self._schedule
        system = self._system
        if self._default:
            serving = clock.target  # type: ignore[attr-defined]
            if serving is None:
                serving = _clock._override
            if serving is not None:
                clock = serving
                schedule = getattr(serving, "call_later", None)
                system = False
        seconds = self.seconds
        ambient = _deadline.get()
        if ambient is not None:
            left = ambient.remaining()
            if left <= seconds:
                if (
                    ambient.task is task
                    and isinstance(ambient, _Scope)
                    and not ambient.expired
                    and not ambient.closed
                ):
                    # The enclosing timeout fires first and reports itself; its
                    # deadline stays the ambient one. Our timer still runs, at
                    # our own length, as asyncio.timeout's would: if the body
                    # swallows the outer cancellation, this one still ends it.
                    scope = _Scope(task, ambient.at, ambient.clock, seconds)
                    _arm(scope, loop, seconds, schedule)
                    return scope
                # Inherited from a parent task whose timer cannot reach us, or
                # an enclosing timeout that already fired and whose
                # cancellation the body swallowed: our own timer enforces that
                # deadline (at most what is left), and reports it when it fires.
                scope = _Scope(task, ambient.at, ambient.clock, ambient.seconds)
                scope.token = _deadline.set(scope)
                _arm(scope, loop, max(0.0, left), schedule)
                return scope
        if system:
            # The system clock's reading (see SystemClock.monotonic), inlined
            # and without looking the loop up again: this is the hot path.
            virtual = _virtual.get(type(loop))
            if virtual is None:
                virtual = _is_virtual(type(loop))
            if virtual and type(time.monotonic) is BuiltinFunctionType:  # freezegun's wins
                now = loop.time()
                clock = LoopClock(loop)  # remaining() reads this loop's time, from any thread
            else:
                now = time.monotonic()
                clock = MONOTONIC_CLOCK  # no loop lookup when remaining() reads it
        else:
            now = clock.monotonic()
        scope = _Scope(task, now + seconds, clock, seconds)
        scope.token = _deadline.set(scope)
        _arm(scope, loop, seconds, schedule)
        return scope

    def _exit(self, scope: _Scope, exc: BaseException | None, operation: str | None) -> None:
        scope.closed = True
        if scope.handle is not None:
            scope.handle.cancel()
            scope.handle = None
        if scope.token is not None:
            _deadline.reset(scope.token)
            scope.token = None
        if scope.expired:
            scope.expired = False
            if scope.task.uncancel() <= scope.cancelling and isinstance(exc, asyncio.CancelledError):
                bus = self.bus
                if bus.wants(TimeoutElapsed):
                    bus.emit(
                        TimeoutElapsed(
                            policy="timeout",
                            name=self.name,
                            operation=operation,
                            time=self.clock.monotonic(),
                            seconds=scope.seconds,
                        )
                    )
                raise TimeoutExceededError(scope.seconds) from exc

    def wrap_async(self, inner: AsyncLayer) -> AsyncLayer:
        """Return the async layer that bounds *inner* by the timeout."""
        enter = self._enter
        leave = self._exit

        async def run(ctx: CallContext, fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
            scope = enter()
            try:
                result = await inner(ctx, fn, args, kwargs)
            except BaseException as exc:
                leave(scope, exc, ctx.operation)
                raise
            leave(scope, None, ctx.operation)
            return result

        return run

    def wrap_sync(self, inner: SyncLayer) -> SyncLayer:
        """Always raises: a sync function cannot be interrupted.

        Raises:
            TypeError: Always.
        """
        raise TypeError("timeout() cannot guard a sync function; make it `async def`")

    async def __aenter__(self) -> Timeout:
        push_scope(self, self._enter())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exit(pop_scope(self), exc, None)


def timeout(
    seconds: float | timedelta,
    *,
    name: str | None = None,
    clock: Clock | None = None,
    bus: EventBus | None = None,
) -> Timeout:
    """Bound an async call (or an ``async with`` block) to *seconds*.

    On expiry the work is cancelled in the caller's task and
    :class:`TimeoutExceededError` (also a builtin ``TimeoutError``) is
    raised, its ``__cause__`` the ``CancelledError``. A cancellation from
    outside is never reported as a timeout. The timeout sets the ambient
    deadline for everything inside it; a nested timeout never extends it.

    Args:
        seconds: Finite seconds > 0, or a ``timedelta``.
        name: Name reported in events.
        clock: Time source; with ``FakeClock`` the timer fires in virtual time.
        bus: Event bus (default: ``default_bus``).

    Returns:
        The :class:`Timeout` policy: decorator, ``.call``, ``async with``.

    Raises:
        TypeError: *seconds* is not a number or timedelta, or (when
            decorating) the function is sync.
        ValueError: *seconds* is <= 0, NaN or infinite.
    """
    return Timeout(seconds, name=name, clock=clock, bus=bus)
