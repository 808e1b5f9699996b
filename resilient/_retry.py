"""``retry``: run again after failures, with backoff, deadlines and budgets."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeAlias

from . import _config
from ._budget import RetryBudget, check_budget
from ._clock import Clock, blocking_sleep
from ._context import CallContext, _deadline
from ._events import Event, EventBus, RetriesExhausted, RetryScheduled
from ._lazy import LazyModule
from ._numbers import describe
from ._pipeline import Args, AsyncLayer, Kwargs, Policy, SyncLayer
from ._validate import (
    MAX_WAIT,
    ExceptionSpec,
    check_bus,
    check_clock,
    check_duration,
    check_int,
    check_name,
    check_predicate,
    make_matcher,
)
from .backoff import Backoff, BackoffFunction, _to_backoff

if TYPE_CHECKING:
    import asyncio
else:
    asyncio = LazyModule("asyncio", globals())  # imported on first use

__all__ = ["LongRetryAfter", "Retry", "retry"]

_GIVE_UP = -1.0

LongRetryAfter: TypeAlias = Literal["give_up", "cap"]
"""What ``retry`` does with a Retry-After hint longer than the backoff's ``max_delay``."""


def _retry_after(exc: BaseException | None) -> float | None:
    if exc is None:
        return None
    try:
        value = getattr(exc, "retry_after", None)
    except Exception:
        # A broken property on the user's exception is not a reason to lose
        # the exception itself: treat it as "no hint".
        return None
    return _seconds(value)


def _result_hint(hint: Callable[[Any], object], result: Any) -> float | None:
    try:
        value = hint(result)
    except Exception:
        # As for an exception's broken retry_after: the result is not lost
        # over a hint that cannot be read.
        return None
    return _seconds(value)


def _seconds(value: object) -> float | None:
    if isinstance(value, (bool, complex)) or not isinstance(value, numbers.Number):
        return None
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _check_long_retry_after(value: object) -> LongRetryAfter:
    if not isinstance(value, str):
        raise TypeError(f"long_retry_after must be 'give_up' or 'cap', got {describe(value)}")
    if value not in ("give_up", "cap"):
        raise ValueError(f"long_retry_after must be 'give_up' or 'cap', got {describe(value)}")
    return value  # type: ignore[return-value]


class Retry(Policy):
    """The policy returned by :func:`retry` (see it for the arguments).

    Stateless apart from an optional shared budget: each call keeps its own
    attempt count and backoff sequence, so concurrent calls share nothing.
    """

    kind: ClassVar[str] = "retry"
    emits: ClassVar[tuple[type[Event], ...]] = (RetryScheduled, RetriesExhausted)

    def __init__(
        self,
        *,
        attempts: int = 3,
        on: ExceptionSpec = Exception,
        on_result: Callable[[Any], bool] | None = None,
        backoff: Backoff | float | timedelta | BackoffFunction | None = None,
        deadline: float | timedelta | None = None,
        budget: RetryBudget | None = None,
        long_retry_after: LongRetryAfter = "give_up",
        name: str | None = None,
        clock: Clock | None = None,
        bus: EventBus | None = None,
    ) -> None:
        self.attempts = check_int("attempts", attempts, minimum=1)
        self._match = make_matcher("on", on)
        self.on = on
        if on_result is not None:
            check_predicate("on_result", on_result, "(result)")
        self.on_result = on_result
        # A predicate may also say how long a result asks to wait
        # (resilient.http.retryable_status does): retry_after(result) -> seconds.
        hint = getattr(on_result, "retry_after", None)
        self._result_hint: Callable[[Any], object] | None = hint if callable(hint) else None
        self.backoff = _to_backoff(backoff)
        self.long_retry_after = _check_long_retry_after(long_retry_after)
        self.deadline = check_duration("deadline", deadline, allow_none=True)
        self.budget = check_budget(budget)
        self.name = check_name(name)
        self.clock = check_clock(clock)
        self.bus = check_bus(bus)

    def __repr__(self) -> str:
        return f"retry(attempts={self.attempts}, backoff={self.backoff!r}, deadline={self.deadline})"

    # The decision shared by the async and sync loops. Returns the planned
    # delay (the loops skip the wait in test mode), or _GIVE_UP after
    # emitting RetriesExhausted.
    def _next_delay(
        self,
        ctx: CallContext,
        attempt: int,
        exc: BaseException | None,
        result: Any,
        previous: float | None,
        started: float,
    ) -> float:
        reason = None
        delay = 0.0
        limit = self.attempts
        if _config._attempts is not None:  # set_testing(True, attempts=N)
            limit = _config.attempts_in_test_mode(limit)
        if attempt >= limit:
            reason = "attempts"
        else:
            try:
                delay = self.backoff._delay_for(attempt, previous, exc, result)
                if not 0.0 <= delay <= MAX_WAIT:  # NaN fails too
                    # A custom strategy's bug; sleeping a negative or NaN
                    # delay would silently retry at once (or raise deep in a clock).
                    raise ValueError(
                        f"backoff {describe(self.backoff, typed=False, limit=200)} returned "
                        f"{describe(delay)}; need seconds >= 0 and <= {MAX_WAIT:g}"
                    )
            except Exception as bad:
                if exc is not None:
                    raise bad from exc
                raise
            if exc is not None:
                ra = _retry_after(exc)
            elif self._result_hint is not None:
                ra = _result_hint(self._result_hint, result)
            else:
                ra = None
            if ra is not None:
                delay = max(delay, ra)
                # Beyond MAX_WAIT no sleep can honour it (max_delay may be inf).
                cap = min(self.backoff.max_delay, MAX_WAIT)
                if delay > cap:
                    if self.long_retry_after == "cap":
                        delay = cap  # wait as long as the strategy ever would, then try
                    else:
                        reason = "retry_after"
            # `>=`: a wait ending exactly at the deadline would leave no time
            # for the attempt after it.
            if (
                reason is None
                and self.deadline is not None
                and self.clock.monotonic() + delay >= started + self.deadline
            ):
                reason = "deadline"
            if reason is None:
                ambient = _deadline.get()
                if ambient is not None and delay >= ambient.remaining():
                    reason = "deadline"
            if reason is None and self.budget is not None and not self.budget.try_withdraw():
                reason = "budget"
        bus = self.bus
        if reason is not None:
            if bus.wants(RetriesExhausted):
                bus.emit(
                    RetriesExhausted(
                        policy="retry",
                        name=self.name,
                        operation=ctx.operation,
                        time=self.clock.monotonic(),
                        attempts=attempt,
                        exception=exc,
                        reason=reason,
                    )
                )
            return _GIVE_UP
        if bus.wants(RetryScheduled):
            bus.emit(
                RetryScheduled(
                    policy="retry",
                    name=self.name,
                    operation=ctx.operation,
                    time=self.clock.monotonic(),
                    attempt=attempt,
                    delay=delay,  # planned, even when test mode skips the wait
                    exception=exc,
                    result=result,
                )
            )
        return delay

    def _start(self) -> float:
        # Per call: a budget deposit, and the start time for the deadline.
        if self.budget is not None:
            self.budget.deposit()
        return self.clock.monotonic() if self.deadline is not None else 0.0

    def wrap_async(self, inner: AsyncLayer) -> AsyncLayer:
        """Return the async retry loop around *inner*."""
        from ._cancelling import cancel_requested, running_task  # asyncio, loaded with the first call

        match = self._match
        on_result = self.on_result
        decide = self._next_delay
        clock = self.clock
        needs_start = self.deadline is not None or self.budget is not None

        async def run(ctx: CallContext, fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
            started = self._start() if needs_start else 0.0
            # The first attempt reads no cancellation count (the success path
            # looks nothing up): its failure is judged by cancel_requested on
            # the evidence the exception carries. Later attempts compare the
            # count against its value before them: only an increase means a
            # request during the attempt (a swallowed one from before must not count).
            try:
                result = await inner(ctx, fn, args, kwargs)
            except Exception as exc:
                if not match(exc):
                    raise
                last: BaseException | None = exc
            else:
                if on_result is None or not on_result(result):
                    return result
                last = None
            # Failure path: per-call state lives in these locals, and the call
            # gets a context of its own before its attempt number changes.
            if ctx.shared:
                ctx = ctx.fork()
            task = running_task()
            before: int | None = None
            attempt = 1
            previous: float | None = None
            while True:
                if last is not None and task is not None and cancel_requested(task, before, last):
                    # Someone asked to cancel this task and the attempt turned
                    # the cancellation into an ordinary exception: never retry it.
                    raise last
                delay = decide(ctx, attempt, last, None if last is not None else result, previous, started)
                if delay == _GIVE_UP:
                    if last is not None:
                        raise last
                    return result
                if delay > 0:
                    if _config._testing:
                        # Skipped waits still count against the deadline (and
                        # stay `previous`), so test mode decides as production.
                        started -= delay
                    else:
                        await clock.sleep(delay)
                previous = delay
                attempt += 1
                ctx.attempt = attempt
                last = None
                if task is not None:
                    before = task.cancelling()
                try:
                    result = await inner(ctx, fn, args, kwargs)
                except Exception as exc:
                    if not match(exc):
                        raise
                    last = exc
                else:
                    if on_result is None or not on_result(result):
                        return result

        return run

    def wrap_sync(self, inner: SyncLayer) -> SyncLayer:
        """Return the sync retry loop around *inner* (blocking waits)."""
        match = self._match
        on_result = self.on_result
        decide = self._next_delay
        clock = self.clock
        needs_start = self.deadline is not None or self.budget is not None

        def run(ctx: CallContext, fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
            attempt = 1
            previous: float | None = None
            started = self._start() if needs_start else 0.0
            while True:
                if attempt > 1:
                    ctx.attempt = attempt
                last: BaseException | None = None
                try:
                    result = inner(ctx, fn, args, kwargs)
                except Exception as exc:
                    if not match(exc):
                        raise
                    last = exc
                    result = None
                else:
                    if on_result is None or not on_result(result):
                        return result
                delay = decide(ctx, attempt, last, result, previous, started)
                if delay == _GIVE_UP:
                    if last is not None:
                        raise last
                    return result
                if delay > 0:
                    if _config._testing:
                        started -= delay  # as in the async loop
                    else:
                        blocking_sleep(clock, delay)
                previous = delay
                attempt += 1
                if ctx.shared:
                    ctx = ctx.fork()

        return run


def retry(
    *,
    attempts: int = 3,
    on: ExceptionSpec = Exception,
    on_result: Callable[[Any], bool] | None = None,
    backoff: Backoff | float | timedelta | BackoffFunction | None = None,
    deadline: float | timedelta | None = None,
    budget: RetryBudget | None = None,
    long_retry_after: LongRetryAfter = "give_up",
    name: str | None = None,
    clock: Clock | None = None,
    bus: EventBus | None = None,
) -> Retry:
    """Retry a call that fails with an exception matching *on* (or a result matching *on_result*).

    Control-flow exceptions (cancellation, ``KeyboardInterrupt``,
    ``SystemExit``, ``GeneratorExit``) are never retried, whatever *on* says.
    When retries run out the last exception is re-raised as the same object
    (for *on_result*, the last result is returned).

    Args:
        attempts: Total attempts including the first (int >= 1).
        on: An exception type, a tuple of types, or a predicate
            ``(exc) -> bool``. An ``ExceptionGroup`` matches only when every
            leaf matches. ``BaseException`` means every ``Exception``.
        on_result: Predicate ``(result) -> bool``; True means retry. If it
            also has a ``retry_after(result) -> seconds | None`` method (as
            :func:`resilient.http.retryable_status` does), a result retry
            honours that hint as an exception's ``retry_after``.
        backoff: A :mod:`resilient.backoff` strategy, constant seconds, or a
            callable ``(attempt, exc_or_none) -> seconds``, or
            ``(attempt, exc_or_none, result_or_none) -> seconds`` to see the
            result of an ``on_result`` retry (a third positional parameter
            without a default selects that form). Default:
            ``exponential(initial=0.1, multiplier=2, max_delay=10, jitter="full")``.
            An exception's numeric ``retry_after`` raises the wait to at
            least that; beyond the strategy's ``max_delay``, see
            *long_retry_after*. A number's ``max_delay`` is the number
            itself (use ``backoff.constant(d, max_delay=m)`` to wait longer
            hints); a callable has none (any finite ``retry_after`` is waited).
        deadline: Seconds (or a ``timedelta``) for all attempts and waits
            together; retry never starts a wait that would end at or past it
            (nor past the ambient deadline of an enclosing ``timeout``). It
            does not interrupt a running attempt: put a ``timeout`` outside
            for that. In test mode (``set_testing``) skipped waits still
            count, so retry gives up where it would for real.
        budget: A :class:`RetryBudget` shared across calls, or None.
        long_retry_after: When a Retry-After hint exceeds the strategy's
            ``max_delay``: ``"give_up"`` (the default) gives up at once
            (``RetriesExhausted.reason == "retry_after"``); ``"cap"`` waits
            ``max_delay`` and tries again.
        name: Name reported in events.
        clock: Time source; ``FakeClock`` in tests.
        bus: Event bus (default: ``default_bus``).

    Returns:
        The :class:`Retry` policy: a decorator with ``.call``.

    Raises:
        TypeError: A parameter has the wrong type.
        ValueError: A parameter is out of range, or *on* names only
            control-flow exceptions.
    """
    return Retry(
        attempts=attempts,
        on=on,
        on_result=on_result,
        backoff=backoff,
        deadline=deadline,
        budget=budget,
        long_retry_after=long_retry_after,
        name=name,
        clock=clock,
        bus=bus,
    )
