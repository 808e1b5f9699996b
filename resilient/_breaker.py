"""``circuit_breaker``: stop calling a failing dependency, then probe it.

The breaker classifies how each call ended and emits events; the state
machine's atomic steps (admission, counting, transitions) belong to a
:class:`~resilient.backends.BreakerBackend`, in process memory by default.
Each admitted call holds a permit stamped with the breaker's generation, so
a call that was running when the breaker moved on is ignored when it ends.

A call that waits in an inner policy's queue after it was admitted (a
bulkhead inside the breaker) is checked again as it leaves the queue, and
the wait is left out of its slow-call timing: the layers listen for waits
reported through :mod:`resilient._waits` (only calls that waited report).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from types import TracebackType
from typing import Any, cast

from ._breaker_core import SUCCESS, UNTIMED, BreakerCore, bind_wait, bind_wait_async
from ._clock import Clock
from ._context import CallContext
from ._events import EventBus
from ._pipeline import Args, AsyncLayer, Kwargs, Policy, SyncLayer
from ._scopes import pop_scope, push_scope
from ._state import CircuitState
from ._tracking import track
from ._validate import (
    ExceptionSpec,
    check_bus,
    check_clock,
    check_duration,
    check_fraction,
    check_int,
    check_name,
    make_matcher,
)
from ._waits import on_wait
from .backends import BreakerBackend, BreakerConfig, BreakerStats, MemoryBackend, Permit

__all__ = ["CircuitBreaker", "circuit_breaker"]


def _seconds(param: str, value: object) -> float | None:
    return check_duration(param, value, allow_none=True)


MAX_WINDOW = 1_000_000
"""The largest count window: one byte per call, allocated when the breaker is made.

Longer memories are what ``window_seconds`` is for (fixed memory).
"""
MIN_WINDOW_SECONDS = 0.001
"""The shortest time window: its buckets must be measurable clock intervals."""


class CircuitBreaker(BreakerCore, Policy):
    """The policy returned by :func:`circuit_breaker`.

    A decorator, an executor (``call``), and ``async with breaker:`` /
    ``with breaker:``. One object guarding several functions shares one state.
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        recovery_timeout: float | timedelta = 30.0,
        half_open_max_calls: int = 1,
        success_threshold: int = 1,
        failure_rate: float | None = None,
        window: int = 100,
        window_seconds: float | timedelta | None = None,
        minimum_calls: int = 10,
        slow_call_duration: float | timedelta | None = None,
        slow_call_rate: float = 1.0,
        on: ExceptionSpec = Exception,
        ignore: ExceptionSpec = (),
        name: str | None = None,
        backend: BreakerBackend | None = None,
        clock: Clock | None = None,
        bus: EventBus | None = None,
    ) -> None:
        recovery = check_duration("recovery_timeout", recovery_timeout)
        assert recovery is not None
        self.config = BreakerConfig(
            failure_threshold=check_int("failure_threshold", failure_threshold, minimum=1),
            recovery_timeout=recovery,
            half_open_max_calls=check_int("half_open_max_calls", half_open_max_calls, minimum=1),
            success_threshold=check_int("success_threshold", success_threshold, minimum=1),
            failure_rate=None if failure_rate is None else check_fraction("failure_rate", failure_rate),
            window=check_int("window", window, minimum=1, maximum=MAX_WINDOW),
            window_seconds=check_duration(
                "window_seconds", window_seconds, allow_none=True, minimum=MIN_WINDOW_SECONDS
            ),
            minimum_calls=check_int("minimum_calls", minimum_calls, minimum=1),
            slow_call_duration=_seconds("slow_call_duration", slow_call_duration),
            slow_call_rate=check_fraction("slow_call_rate", slow_call_rate),
        )
        self._on = make_matcher("on", on)
        self._ignore = make_matcher("ignore", ignore, allow_empty=True)
        self.on = on
        self.ignore = ignore
        self.name = check_name(name)
        self.clock = check_clock(clock)
        self.bus = check_bus(bus)
        if backend is None:
            backend = MemoryBackend()
        elif not isinstance(backend, BreakerBackend):
            raise TypeError(f"backend must be a resilient.backends.BreakerBackend, got {backend!r}")
        backend.bind(self.config, self.clock, name=self.name, bus=self.bus)
        self.backend: BreakerBackend = backend
        self._slow = self.config.slow_call_duration
        # Async code may call a non-blocking backend's sync steps directly.
        self._direct = backend.nonblocking
        track(self)  # weakly, for resilient.testing.reset_policies()

    def __repr__(self) -> str:
        # Configuration only: reading the state could mean I/O with a shared backend.
        c = self.config
        label = "" if self.name is None else f"name={self.name!r}, "
        mode = (
            f"failure_threshold={c.failure_threshold}"
            if c.failure_rate is None
            else f"failure_rate={c.failure_rate}"
        )
        return f"circuit_breaker({label}{mode}, recovery_timeout={c.recovery_timeout})"

    # --- layers -------------------------------------------------------------------

    def wrap_sync(self, inner: SyncLayer) -> SyncLayer:
        """Return the sync layer that guards *inner* (thread-safe, never serialising)."""
        backend = self.backend
        acquire = self.backend.acquire
        record = self.backend.record
        admit = self._admit
        emit = self._emit
        timed = self._slow is not None
        success = self._success
        clock = self.clock
        untimed = UNTIMED
        me = self

        def run(ctx: CallContext, fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
            # Fastest path: CLOSED with nothing to forget (no acquire, no record).
            quiet = backend.quiet_permit
            if quiet is None:
                got = acquire()
                # Fast path: a plain permit that changed nothing (every CLOSED call).
                plain = got.__class__ is Permit and got.transition is None
                permit = cast(Permit, got) if plain else admit(got, ctx.operation)
            else:
                permit = quiet
            # A list, so that a wait in an inner queue can move the start (see BreakerCore._after_wait).
            begun = [clock.monotonic()] if timed else untimed
            try:
                result = inner(ctx, fn, args, kwargs)
            except BaseException as exc:
                me._settle(permit, exc, begun[0], ctx.operation)
                raise
            if timed or permit is not backend.quiet_permit:
                transition = record(permit, success(begun[0]) if timed else SUCCESS)
                if transition is not None:
                    emit(transition, ctx.operation)
            return result

        on_wait(run, bind_wait)
        return run

    def wrap_async(self, inner: AsyncLayer) -> AsyncLayer:
        """Return the async layer that guards *inner*."""
        if not self._direct:
            return self._wrap_async_remote(inner)
        backend = self.backend
        acquire = self.backend.acquire
        record = self.backend.record
        admit = self._admit
        emit = self._emit
        timed = self._slow is not None
        success = self._success
        clock = self.clock
        untimed = UNTIMED
        me = self

        async def run(ctx: CallContext, fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
            # Fastest path: CLOSED with nothing to forget (no acquire, no record).
            quiet = backend.quiet_permit
            if quiet is None:
                got = acquire()
                # Fast path: a plain permit that changed nothing (every CLOSED call).
                plain = got.__class__ is Permit and got.transition is None
                permit = cast(Permit, got) if plain else admit(got, ctx.operation)
            else:
                permit = quiet
            # A list, so that a wait in an inner queue can move the start (see BreakerCore._after_wait).
            begun = [clock.monotonic()] if timed else untimed
            try:
                result = await inner(ctx, fn, args, kwargs)
            except BaseException as exc:
                me._settle(permit, exc, begun[0], ctx.operation)
                raise
            if timed or permit is not backend.quiet_permit:
                transition = record(permit, success(begun[0]) if timed else SUCCESS)
                if transition is not None:
                    emit(transition, ctx.operation)
            return result

        on_wait(run, bind_wait)
        return run

    def _wrap_async_remote(self, inner: AsyncLayer) -> AsyncLayer:
        backend = self.backend
        admit = self._admit_async
        settle = self._settle_async
        clock = self.clock
        me = self

        async def run(ctx: CallContext, fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
            permit = await admit(await backend.acquire_async(), ctx.operation)
            begun = [clock.monotonic()]
            try:
                result = await inner(ctx, fn, args, kwargs)
            except BaseException as exc:
                await settle(permit, exc, begun[0], ctx.operation)
                raise
            await me._settle_async(permit, None, begun[0], ctx.operation)
            return result

        on_wait(run, bind_wait_async)
        return run

    # --- context managers ---------------------------------------------------------

    async def __aenter__(self) -> CircuitBreaker:
        if self._direct:
            permit = self._admit(self.backend.acquire(), None)
        else:
            permit = await self._admit_async(await self.backend.acquire_async(), None)
        push_scope(self, (permit, self.clock.monotonic()))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        permit, start = pop_scope(self)
        if self._direct:
            self._settle(permit, exc, start, None)
        else:
            await self._settle_async(permit, exc, start, None)

    def __enter__(self) -> CircuitBreaker:
        permit = self._admit(self.backend.acquire(), None)
        push_scope(self, (permit, self.clock.monotonic()))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        permit, start = pop_scope(self)
        self._settle(permit, exc, start, None)

    # --- object API ---------------------------------------------------------------

    @property
    def state(self) -> CircuitState:
        """The current state; OPEN reads as HALF_OPEN once the recovery timeout has passed."""
        state, transition = self.backend.state()
        if transition is not None:
            self._emit(transition, None)
        return state

    def peek_state(self) -> CircuitState:
        """Return the state as :attr:`state` would, without moving the breaker or emitting anything.

        A due OPEN -> HALF_OPEN move reads as HALF_OPEN but is not applied:
        the next call (or :attr:`state`) applies it. Metrics scrapes use
        this, so reading a gauge never changes what it measures.

        Returns:
            The current state.
        """
        stats = self.backend.stats()
        if stats.state is CircuitState.OPEN and stats.retry_after is not None and stats.retry_after <= 0:
            return CircuitState.HALF_OPEN
        return stats.state

    def stats(self) -> BreakerStats:
        """Return a snapshot of the state and window statistics.

        Returns:
            The :class:`~resilient.backends.BreakerStats` (calls, failures,
            slow calls, consecutive failures, probes, ``retry_after``).
        """
        return self.backend.stats()

    def isolate(self) -> None:
        """Hold the breaker open: reject every call (``retry_after=None``) until :meth:`reset`."""
        transition = self.backend.isolate()
        if transition is not None:
            self._emit(transition, None)

    def reset(self) -> None:
        """Close the breaker and clear its statistics; calls in flight stop counting."""
        transition = self.backend.reset()
        if transition is not None:
            self._emit(transition, None)

    def _reset_for_tests(self) -> None:
        # In-process state only: a shared backend's state belongs to the fleet.
        if isinstance(self.backend, MemoryBackend):
            self.reset()

    async def state_async(self) -> CircuitState:
        """Like :attr:`state`, through the backend's async step.

        Returns:
            The current state.
        """
        state, transition = await self.backend.state_async()
        if transition is not None:
            self._emit(transition, None)
        return state

    async def isolate_async(self) -> None:
        """Like :meth:`isolate`, through the backend's async step."""
        transition = await self.backend.isolate_async()
        if transition is not None:
            self._emit(transition, None)

    async def reset_async(self) -> None:
        """Like :meth:`reset`, through the backend's async step."""
        transition = await self.backend.reset_async()
        if transition is not None:
            self._emit(transition, None)


def circuit_breaker(
    *,
    failure_threshold: int = 5,
    recovery_timeout: float | timedelta = 30.0,
    half_open_max_calls: int = 1,
    success_threshold: int = 1,
    failure_rate: float | None = None,
    window: int = 100,
    window_seconds: float | timedelta | None = None,
    minimum_calls: int = 10,
    slow_call_duration: float | timedelta | None = None,
    slow_call_rate: float = 1.0,
    on: ExceptionSpec = Exception,
    ignore: ExceptionSpec = (),
    name: str | None = None,
    backend: BreakerBackend | None = None,
    clock: Clock | None = None,
    bus: EventBus | None = None,
) -> CircuitBreaker:
    """Stop calling a dependency that keeps failing; let probes test its recovery.

    CLOSED counts outcomes and opens after *failure_threshold* consecutive
    failures, or, with *failure_rate*, when the failure rate (or, with
    *slow_call_duration*, the slow-call rate) over the window reaches the
    threshold once *minimum_calls* are recorded. OPEN rejects every call with
    a fresh :class:`CircuitOpenError` (``retry_after`` = seconds until
    HALF_OPEN) without calling the function. After *recovery_timeout*,
    HALF_OPEN admits at most *half_open_max_calls* concurrent probes:
    *success_threshold* successes close it, any failed (or slow) probe
    re-opens it. Calls still running from an earlier state never count.

    Classification: an exception matching *on* and not *ignore* is a failure;
    one matching *ignore* is neutral; any other exception is a success (the
    dependency answered). This library's rejection errors raised inside it
    and control-flow exceptions (cancellation, ``KeyboardInterrupt``...) are
    neutral: they free their permit and count as nothing.

    Args:
        failure_threshold: Consecutive failures that open it (int >= 1);
            unused when *failure_rate* is set.
        recovery_timeout: Seconds (or ``timedelta``) OPEN lasts, finite > 0.
        half_open_max_calls: Concurrent probes in HALF_OPEN (int >= 1).
        success_threshold: Probe successes that close it (int >= 1).
        failure_rate: Failure fraction in (0, 1] that opens it, or None for
            consecutive mode.
        window: The count window: the last *window* recorded calls (int from
            1 to 1,000,000; one byte each).
        window_seconds: Use a time window of this many seconds (at least
            0.001) instead (fixed buckets: O(1) memory whatever the traffic).
        minimum_calls: Calls the window must hold before a rate opens it
            (int >= 1; capped at *window* for a count window).
        slow_call_duration: Seconds above which a call is slow, or None.
        slow_call_rate: Slow fraction in (0, 1] that opens it.
        on: Exceptions that count as failures: a type, a tuple, or a
            predicate ``(exc) -> bool``.
        ignore: Exceptions that count as nothing (same forms; default none).
        name: Name reported in errors and events.
        backend: Where the state lives (default: a new
            :class:`~resilient.backends.MemoryBackend`).
        clock: Time source; ``FakeClock`` in tests.
        bus: Event bus (default: ``default_bus``).

    Returns:
        The :class:`CircuitBreaker`: decorator, ``.call``, ``async with``
        and ``with``, ``.state``, ``.isolate()``, ``.reset()``, ``.stats()``.

    Raises:
        TypeError: A parameter has the wrong type.
        ValueError: A parameter is out of range, or *on*/*ignore* names only
            control-flow exceptions.
    """
    return CircuitBreaker(
        failure_threshold=failure_threshold,
        recovery_timeout=recovery_timeout,
        half_open_max_calls=half_open_max_calls,
        success_threshold=success_threshold,
        failure_rate=failure_rate,
        window=window,
        window_seconds=window_seconds,
        minimum_calls=minimum_calls,
        slow_call_duration=slow_call_duration,
        slow_call_rate=slow_call_rate,
        on=on,
        ignore=ignore,
        name=name,
        backend=backend,
        clock=clock,
        bus=bus,
    )
