"""The pipeline layers of a ``rate_limiter`` (:mod:`resilient._rate_limiter` is the policy).

The local layers inline the uncontended path: a free permit costs a lock
round trip and two float comparisons, a rejection (a saturated limiter
rejects most calls) not even the lock. A call that waited for its permit
tells the layers around it before it runs (see :mod:`resilient._waits`),
from a helper so that the layers' closures stay as small; if one of them
rejects it (a breaker that opened meanwhile), its permit goes back.
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import _clock
from ._clock import SystemClock
from ._context import CallContext
from ._errors import RateLimitedError
from ._events import RateLimited
from ._gcra import EPSILON, AsyncWaiter, SyncWaiter
from ._pipeline import Args, AsyncLayer, Kwargs, SyncLayer
from ._waits import WaitReporter

if TYPE_CHECKING:
    from ._rate_limiter import RateLimiter

__all__ = ["async_layer", "sync_layer"]


def async_layer(limiter: RateLimiter, inner: AsyncLayer) -> AsyncLayer:
    """Return *limiter*'s async layer that runs *inner* once it holds a permit."""
    reporter = WaitReporter()  # tells the layers around of a call's wait
    if limiter.backend is not None:
        acquire_shared = limiter._acquire_async
        clock = limiter.clock

        async def run_shared(ctx: CallContext, fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
            # (A clock read is nothing next to the backend's round trip.)
            start = clock.monotonic() if reporter.needs_time else 0.0
            held = await acquire_shared(ctx.operation)
            if held is not None and reporter.listening:
                gate = reporter.gate
                if gate is None or not gate.waiters_admitted:
                    try:
                        waited = clock.monotonic() - start if reporter.needs_time else 0.0
                        pending = reporter.report(waited, ctx.operation)
                        if pending is not None:
                            await pending
                    except BaseException:
                        await limiter._give_back_async(held)  # rejected: the call never starts
                        raise
            return await inner(ctx, fn, args, kwargs)

        return run_shared

    g = limiter._gcra
    acquire, release = g.lock.acquire, g.lock.release
    interval, limit = g.interval, g.limit
    max_wait = limiter._max_wait
    reject_above = max_wait + EPSILON
    monotonic = g.clock.monotonic
    # The system clock's reading without its method call; still looked up
    # at call time, so freezegun can move it. A default clock is the system
    # clock unless it serves another one (a pipeline's, use_clock's).
    system = type(limiter.clock) is SystemClock
    default = limiter._default
    join = g.join_locked
    wait_for = _waiting_async(limiter, reporter)
    wants = limiter.bus.wants
    name = limiter.name

    async def run(ctx: CallContext, fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
        # _acquire_local_async inlined: a free permit is the hot path, a
        # rejection the next one (a saturated limiter rejects most calls).
        now = (
            _time.monotonic()
            if system or (default is not None and default.target is None and _clock._override is None)
            else monotonic()
        )
        tat = g.tat
        new = (tat if tat > now else now) + interval
        wait = new - limit - now
        if wait > reject_above:
            # Decided without the lock: `tat` only moves back when a waiter
            # leaves, so a read racing with that can at worst reject a call
            # that came a moment too early. Admitting takes the lock.
            w: Any = wait
        else:
            acquire()
            try:
                if g.tat is not tat:  # another thread moved it meanwhile: decide again
                    tat = g.tat
                    new = (tat if tat > now else now) + interval
                    wait = new - limit - now
                if wait <= EPSILON and not g.queued:
                    g.tat = new
                    w = None
                else:
                    w = join(now, max_wait, AsyncWaiter)
            finally:
                release()
        if w is not None:
            if w.__class__ is float:
                if wants(RateLimited):
                    limiter._emit_rejected(ctx.operation, w)
                raise RateLimitedError(name, w)
            await wait_for(w, now, ctx.operation)
        return await inner(ctx, fn, args, kwargs)

    return run


def _waiting_async(
    limiter: RateLimiter, reporter: WaitReporter
) -> Callable[[AsyncWaiter, float, str | None], Any]:
    """The local layer's wait for a permit, then its report (one closure variable for the layer)."""
    g = limiter._gcra
    wait = g.wait_async
    monotonic = g.clock.monotonic

    async def wait_for(w: AsyncWaiter, since: float, operation: str | None) -> None:
        await wait(w)
        if reporter.listening:
            gate = reporter.gate
            if gate is None or not gate.waiters_admitted:
                try:
                    waited = monotonic() - since if reporter.needs_time else 0.0
                    pending = reporter.report(waited, operation, 2)
                    if pending is not None:
                        await pending
                except BaseException:
                    g.give_back()  # rejected: the call never starts
                    raise

    return wait_for


def sync_layer(limiter: RateLimiter, inner: SyncLayer) -> SyncLayer:
    """Return *limiter*'s sync layer that runs *inner* once it holds a permit (thread-safe)."""
    reporter = WaitReporter()  # tells the layers around of a call's wait
    if limiter.backend is not None:
        acquire_shared = limiter._acquire_sync
        clock = limiter.clock

        def run_shared(ctx: CallContext, fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
            start = clock.monotonic() if reporter.needs_time else 0.0
            held = acquire_shared(ctx.operation)
            if held is not None and reporter.listening:
                gate = reporter.gate
                if gate is None or not gate.waiters_admitted:
                    try:
                        waited = clock.monotonic() - start if reporter.needs_time else 0.0
                        reporter.report(waited, ctx.operation)
                    except BaseException:
                        limiter._give_back(held)  # rejected: the call never starts
                        raise
            return inner(ctx, fn, args, kwargs)

        return run_shared

    g = limiter._gcra
    acquire, release = g.lock.acquire, g.lock.release
    interval, limit = g.interval, g.limit
    max_wait = limiter._max_wait
    reject_above = max_wait + EPSILON
    monotonic = g.clock.monotonic
    system = type(limiter.clock) is SystemClock
    default = limiter._default
    join = g.join_locked
    wait_for = _waiting_sync(limiter, reporter)
    wants = limiter.bus.wants
    name = limiter.name

    def run(ctx: CallContext, fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
        # As in async_layer.
        now = (
            _time.monotonic()
            if system or (default is not None and default.target is None and _clock._override is None)
            else monotonic()
        )
        tat = g.tat
        new = (tat if tat > now else now) + interval
        wait = new - limit - now
        if wait > reject_above:
            w: Any = wait
        else:
            acquire()
            try:
                if g.tat is not tat:  # another thread moved it meanwhile: decide again
                    tat = g.tat
                    new = (tat if tat > now else now) + interval
                    wait = new - limit - now
                if wait <= EPSILON and not g.queued:
                    g.tat = new
                    w = None
                else:
                    w = join(now, max_wait, SyncWaiter)
            finally:
                release()
        if w is not None:
            if w.__class__ is float:
                if wants(RateLimited):
                    limiter._emit_rejected(ctx.operation, w)
                raise RateLimitedError(name, w)
            wait_for(w, now, ctx.operation)
        return inner(ctx, fn, args, kwargs)

    return run


def _waiting_sync(
    limiter: RateLimiter, reporter: WaitReporter
) -> Callable[[SyncWaiter, float, str | None], None]:
    """:func:`_waiting_async` for the sync layer."""
    g = limiter._gcra
    wait = g.wait_sync
    monotonic = g.clock.monotonic

    def wait_for(w: SyncWaiter, since: float, operation: str | None) -> None:
        wait(w)
        if reporter.listening:
            gate = reporter.gate
            if gate is None or not gate.waiters_admitted:
                try:
                    reporter.report(monotonic() - since if reporter.needs_time else 0.0, operation, 2)
                except BaseException:
                    g.give_back()  # rejected: the call never starts
                    raise

    return wait_for
