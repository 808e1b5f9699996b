"""``rate_limiter``: admit at most *rate* calls per *per* seconds, with a burst.

GCRA (a token bucket in O(1) state, see :mod:`resilient._gcra`) decides each
call: a free permit admits it at once; otherwise it is rejected with a fresh
:class:`RateLimitedError` whose ``retry_after`` is the time until a permit,
or, when the wait is within ``max_wait`` (and the ambient deadline), it
reserves the next permit and waits for it, FIFO. A cancelled waiter gives
its reservation back. One thread lock guards the state, so a limiter is
shared by threads and by coroutines on any number of event loops; a free
permit costs a lock round trip and two float comparisons.

With a :class:`~resilient.backends.RateLimiterBackend` (Redis) the limit is
shared by a fleet: each call is one atomic step on the shared state, and the
local state takes over while that cannot be reached.

A call that waited for its permit tells the layers around it before it runs
(see :mod:`resilient._waits`): a circuit breaker outside the limiter rejects
it if it opened meanwhile, and leaves the wait out of its slow-call timing.
A call so rejected never started: its permit goes back, as a cancelled
waiter's reservation does (a shared one through the backend's ``cancel``).
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any, ClassVar

from ._clock import Clock, DefaultClock, SystemClock, blocking_sleep
from ._context import _deadline
from ._errors import RateLimitedError
from ._events import BackendDegraded, BackendRecovered, Event, EventBus, RateLimited
from ._gcra import EPSILON, AsyncWaiter, Gcra, SyncWaiter
from ._numbers import describe, plain_number
from ._pipeline import AsyncLayer, Policy, SyncLayer
from ._rate_limiter_layers import async_layer, sync_layer
from ._tracking import track
from ._validate import MAX_WAIT, check_bus, check_clock, check_duration, check_int, check_name
from .backends._limiter_base import RateLimiterBackend, RateLimiterConfig, Reservation

__all__ = ["RateLimiter", "rate_limiter"]

_LOCAL: Any = object()  # "waited for a permit of the local state", from the _acquire_* methods


def _check_rate(value: object) -> float:
    number = plain_number(value)
    if number is None:
        raise TypeError(f"rate must be a number of permits, got {describe(value)}")
    try:
        rate = float(number)
    except OverflowError:
        raise ValueError("rate must be finite, got a huge integer") from None
    if math.isnan(rate) or math.isinf(rate) or rate <= 0:
        raise ValueError(f"rate must be a finite number > 0, got {rate!r}")
    return rate


def _config(rate: object, per: object, burst: object) -> RateLimiterConfig:
    r = _check_rate(rate)
    p = check_duration("per", per)
    assert p is not None
    b = max(1, math.floor(r)) if burst is None else check_int("burst", burst, minimum=1)
    config = RateLimiterConfig(rate=r, per=p, burst=b)
    interval = config.interval
    try:
        limit = b * interval
    except OverflowError:  # an int burst beyond any float
        limit = math.inf
    if not (0 < interval <= MAX_WAIT and limit < math.inf):
        # A waiting call sleeps up to one interval: it must be a sleep the clock can honour.
        shown = f"burst={b}" if b.bit_length() <= 64 else f"a burst of {b.bit_length()} bits"
        raise ValueError(
            f"rate={r:g} per per={p:g}s ({shown}) is not a limit that can be kept: "
            f"a permit every {interval:g}s (at most {MAX_WAIT:g}s), up to burst * that ahead"
        )
    return config


class RateLimiter(Policy):
    """The policy returned by :func:`rate_limiter`; also ``async with`` / ``with``.

    Its permits are shared by every function it decorates and every block
    that enters it, across threads and event loops (and, with a backend,
    across processes).
    """

    kind: ClassVar[str] = "rate_limiter"
    emits: ClassVar[tuple[type[Event], ...]] = (RateLimited, BackendDegraded, BackendRecovered)

    def __init__(
        self,
        rate: float,
        *,
        per: float | timedelta = 1.0,
        burst: int | None = None,
        max_wait: float | timedelta = 0.0,
        backend: RateLimiterBackend | None = None,
        name: str | None = None,
        clock: Clock | None = None,
        bus: EventBus | None = None,
    ) -> None:
        self.config = _config(rate, per, burst)
        wait = check_duration("max_wait", max_wait, allow_zero=True, allow_inf=True, maximum=MAX_WAIT)
        assert wait is not None
        self._max_wait = wait
        self.name = check_name(name)
        self.clock = check_clock(clock)
        self.bus = check_bus(bus)
        config = self.config
        # The schedule is shared by every thread and loop: one time base,
        # time.monotonic, even inside a virtual-time loop (unless a pipeline
        # or use_clock gives the default clock another one).
        self._default: DefaultClock | None = self.clock if type(self.clock) is DefaultClock else None
        schedule_clock = self.clock
        if isinstance(self.clock, SystemClock):
            from ._clock_kinds import ProcessClock  # loaded with the first limiter

            schedule_clock = ProcessClock(self.clock)
        if backend is not None:
            if not isinstance(backend, RateLimiterBackend):
                raise TypeError(
                    f"backend must be a resilient.backends.RateLimiterBackend, got {describe(backend)}"
                )
            backend.bind(config, self.clock, name=self.name, bus=self.bus)
            # While the shared state is out of reach, this process takes its share.
            share = backend.local_share
            local = Gcra(config.interval / share, max(1, math.floor(config.burst * share)), schedule_clock)
        else:
            local = Gcra(config.interval, config.burst, schedule_clock)
        self.backend = backend
        self._gcra = local
        track(self)  # weakly, for resilient.testing.reset_policies()

    def _reset_for_tests(self) -> None:
        # In-process state only (a shared backend's belongs to the fleet), and
        # only with nobody waiting: queued calls hold reservations in it.
        g = self._gcra
        if self.backend is None:
            with g.lock:
                if not g.queued:
                    g.tat = -math.inf

    # --- configuration and state ---------------------------------------------------

    @property
    def rate(self) -> float:
        """Permits per :attr:`per` seconds at the sustained rate."""
        return self.config.rate

    @property
    def per(self) -> float:
        """The period, in seconds, that :attr:`rate` is counted over."""
        return self.config.per

    @property
    def burst(self) -> int:
        """Permits that may be taken at once after an idle period."""
        return self.config.burst

    @property
    def max_wait(self) -> float:
        """The longest a call waits for a permit (0.0: never waits)."""
        return self._max_wait

    @property
    def queued(self) -> int:
        """Calls of this process waiting for their permit right now (local state)."""
        return self._gcra.queued

    @property
    def available(self) -> int:
        """Permits a call of this process could take right now without waiting (local state)."""
        return self._gcra.available()

    def __repr__(self) -> str:
        c = self.config
        extra = "" if self.name is None else f", name={self.name!r}"
        return f"rate_limiter({c.rate:g}, per={c.per:g}, burst={c.burst}, max_wait={self._max_wait:g}{extra})"

    # --- rejecting and waiting -------------------------------------------------------

    def _reject(self, operation: str | None, retry_after: float) -> RateLimitedError:
        """Emit ``RateLimited`` and return a fresh error to raise."""
        retry_after = max(0.0, retry_after)
        if self.bus.wants(RateLimited):
            self._emit_rejected(operation, retry_after)
        return RateLimitedError(self.name, retry_after)

    def _emit_rejected(self, operation: str | None, retry_after: float) -> None:
        self.bus.emit(
            RateLimited(
                policy="rate_limiter",
                name=self.name,
                operation=operation,
                time=self.clock.monotonic(),
                retry_after=retry_after,
            )
        )

    def _take_local(self, factory: type[AsyncWaiter | SyncWaiter]) -> Any:
        """None (a permit now), a waiter to wait on, or the float retry_after of a rejection."""
        g = self._gcra
        lock = g.lock
        lock.acquire()
        try:
            now = g.clock.monotonic()
            tat = g.tat
            new = (tat if tat > now else now) + g.interval
            if new - now <= g.limit + EPSILON and not g.queued:
                g.tat = new
                return None
            return g.join_locked(now, self._max_wait, factory)
        finally:
            lock.release()

    # The _acquire_* methods take a permit or raise; they return what a call
    # that waited holds (None if it did not wait): _LOCAL, or the shared
    # Reservation, for _give_back* if the call will not start after all.

    async def _acquire_local_async(self, operation: str | None) -> Any:
        w = self._take_local(AsyncWaiter)
        if w is None:
            return None
        if w.__class__ is float:
            raise self._reject(operation, w)
        await self._gcra.wait_async(w)
        return _LOCAL

    def _acquire_local_sync(self, operation: str | None) -> Any:
        w = self._take_local(SyncWaiter)
        if w is None:
            return None
        if w.__class__ is float:
            raise self._reject(operation, w)
        self._gcra.wait_sync(w)
        return _LOCAL

    async def _give_back_async(self, held: Any) -> None:
        """A call that waited will not start (a breaker rejected it): its permit returns."""
        if held is _LOCAL:
            self._gcra.give_back()
        else:
            await self.backend.cancel_async(held)  # type: ignore[union-attr]

    def _give_back(self, held: Any) -> None:
        """:meth:`_give_back_async` for sync code."""
        if held is _LOCAL:
            self._gcra.give_back()
        else:
            self.backend.cancel(held)  # type: ignore[union-attr]

    def _bound(self) -> float:
        """The longest wait a shared reservation may have: ``max_wait``, cut short by the deadline."""
        bound = self._max_wait
        ambient = _deadline.get()
        if ambient is not None:
            # A wait that reaches the deadline is refused: keep a microsecond short of it.
            left = ambient.remaining() - 1e-6
            if left < bound:
                bound = max(0.0, left)
        return bound

    async def _acquire_async(self, operation: str | None) -> Any:
        backend = self.backend
        if backend is None:
            return await self._acquire_local_async(operation)
        got = await backend.reserve_async(self._bound())
        if got is None:
            return await self._acquire_local_async(operation)
        if not got.granted:
            raise self._reject(operation, got.delay)
        if got.delay > 0:
            await self._sleep_reserved(backend, got)
            return got
        return None

    async def _sleep_reserved(self, backend: RateLimiterBackend, got: Reservation) -> None:
        try:
            await self.clock.sleep(got.delay)
        except BaseException:
            await backend.cancel_async(got)
            raise

    def _acquire_sync(self, operation: str | None) -> Any:
        backend = self.backend
        if backend is None:
            return self._acquire_local_sync(operation)
        got = backend.reserve(self._bound())
        if got is None:
            return self._acquire_local_sync(operation)
        if not got.granted:
            raise self._reject(operation, got.delay)
        if got.delay > 0:
            try:
                blocking_sleep(self.clock, got.delay)
            except BaseException:
                backend.cancel(got)
                raise
            return got
        return None

    # --- policy layers (built in _rate_limiter_layers) ---------------------------------

    def wrap_async(self, inner: AsyncLayer) -> AsyncLayer:
        """Return the async layer that runs *inner* once it holds a permit."""
        return async_layer(self, inner)

    def wrap_sync(self, inner: SyncLayer) -> SyncLayer:
        """Return the sync layer that runs *inner* once it holds a permit (thread-safe)."""
        return sync_layer(self, inner)

    # --- context managers ------------------------------------------------------------
    # A permit is spent when it is taken: leaving the block gives nothing back.

    async def __aenter__(self) -> RateLimiter:
        """Take a permit for the block, waiting for it if allowed (else RateLimitedError)."""
        await self._acquire_async(None)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Nothing to give back: the permit was spent on entering."""

    def __enter__(self) -> RateLimiter:
        """Take a permit for the block, blocking for it if allowed (else RateLimitedError)."""
        self._acquire_sync(None)
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Nothing to give back: the permit was spent on entering."""


def rate_limiter(
    rate: float,
    *,
    per: float | timedelta = 1.0,
    burst: int | None = None,
    max_wait: float | timedelta = 0.0,
    backend: RateLimiterBackend | None = None,
    name: str | None = None,
    clock: Clock | None = None,
    bus: EventBus | None = None,
) -> RateLimiter:
    """Admit at most *rate* calls per *per* seconds, allowing bursts of *burst*.

    A call that finds a free permit runs at once. Otherwise, if the permit
    it would get is at most *max_wait* seconds away (and before the ambient
    deadline), it reserves it and waits, first come first served; if not, it
    is rejected at once with a fresh :class:`RateLimitedError` (and a
    ``RateLimited`` event) whose ``retry_after`` is the seconds until that
    permit, without the function being called. A waiter that is cancelled
    gives its reservation back: the calls behind it move up.

    Args:
        rate: Permits per *per* seconds, a finite number > 0 (``0.5`` with
            ``per=1`` is one call every two seconds).
        per: The period *rate* is counted over: seconds > 0 or a ``timedelta``.
        burst: Permits that may be taken at once after an idle period, an
            int >= 1 (default: ``max(1, floor(rate))``).
        max_wait: The longest a call may wait for its permit: seconds >= 0
            (at most 1e9, or ``math.inf`` for no bound) or a ``timedelta``;
            0 rejects at once.
        backend: Shared state for a fleet, e.g.
            ``resilient.backends.redis.RedisRateLimiterBackend``; None keeps
            the state in this process.
        name: Name reported in events and errors (a shared backend keys
            its state by it).
        clock: Time source, and what waiting calls sleep on; ``FakeClock``
            in tests.
        bus: Event bus (default: ``default_bus``).

    Returns:
        The :class:`RateLimiter` policy: decorator, ``.call``, ``async with`` and ``with``.

    Raises:
        TypeError: A parameter has the wrong type.
        ValueError: A parameter is out of range (``rate`` or ``per`` not
            finite and > 0, ``burst < 1``, ``max_wait`` negative or NaN, or
            a permit less often than every 1e9 seconds).
    """
    return RateLimiter(
        rate, per=per, burst=burst, max_wait=max_wait, backend=backend, name=name, clock=clock, bus=bus
    )
