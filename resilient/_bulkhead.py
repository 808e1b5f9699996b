"""``bulkhead``: cap how many calls run at once, with a bounded FIFO queue.

One ``threading.Lock`` guards a counter and an ordered queue of waiters, so
the same bulkhead can be shared by coroutines on any number of event loops
and by threads. A free slot costs a lock round trip and an integer check:
no future, no task. Only a caller that has to wait allocates a waiter.

Slots are handed over, not re-contended: releasing a slot while someone
waits gives it directly to the first waiter (``in_use`` does not change).
Hence the invariant ``queued > 0 implies in_use == max_concurrent``, which
is why the fast path only compares the counter. A waiter that was handed a
slot but is cancelled before it runs releases it at once, which hands it on
to the next waiter: no wake-up is ever lost.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import timedelta
from types import TracebackType
from typing import Any, ClassVar, TypeAlias

from ._clock import Clock, SystemClock, TimerHandle, call_later
from ._context import CallContext, _deadline
from ._errors import BulkheadFullError
from ._events import BulkheadRejected, EventBus
from ._pipeline import Args, AsyncLayer, Kwargs, Policy, SyncLayer
from ._scopes import pop_scope, push_scope
from ._validate import check_bus, check_clock, check_duration, check_int, check_name

__all__ = ["Bulkhead", "bulkhead"]

# Waiter states; changed only under the bulkhead's lock.
_QUEUED = 0
_GRANTED = 1  # handed a slot: it now owns one and must release it
_EXPIRED = 2  # removed from the queue by its timer, or abandoned by its owner

_get_running_loop = asyncio._get_running_loop


def _resolve(fut: asyncio.Future[None]) -> None:
    # The waiting task may have been cancelled meanwhile; its handler reads the state.
    if not fut.done():
        fut.set_result(None)


class _AsyncWaiter:
    """A coroutine waiting for a slot on the loop it runs on."""

    __slots__ = ("fut", "handle", "loop", "state")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.fut: asyncio.Future[None] = loop.create_future()
        self.state = _QUEUED
        self.handle: TimerHandle | None = None

    def wake(self) -> bool:
        """Wake the waiter from any thread; False if its loop is gone."""
        if _get_running_loop() is self.loop:
            _resolve(self.fut)
            return True
        try:
            self.loop.call_soon_threadsafe(_resolve, self.fut)
        except RuntimeError:  # the loop is closed: nobody is left to run
            return False
        return True


class _SyncWaiter:
    """A thread blocked on its own pre-acquired lock until woken."""

    __slots__ = ("gate", "handle", "state")

    def __init__(self) -> None:
        self.gate = threading.Lock()
        self.gate.acquire()
        self.state = _QUEUED
        self.handle: TimerHandle | None = None

    def wake(self) -> bool:
        """Release the gate the waiting thread blocks on."""
        self.gate.release()
        return True


_Waiter: TypeAlias = "_AsyncWaiter | _SyncWaiter"


class Bulkhead(Policy):
    """The policy returned by :func:`bulkhead`; also ``async with`` / ``with``.

    Its state (slots and queue) is shared by every function it decorates and
    every block that enters it, across threads and event loops.
    """

    kind: ClassVar[str] = "bulkhead"

    def __init__(
        self,
        max_concurrent: int,
        *,
        max_queue: int = 0,
        queue_timeout: float | timedelta | None = None,
        name: str | None = None,
        clock: Clock | None = None,
        bus: EventBus | None = None,
    ) -> None:
        self._max = check_int("max_concurrent", max_concurrent, minimum=1)
        self._max_queue = check_int("max_queue", max_queue, minimum=0)
        self.queue_timeout: float | None = check_duration("queue_timeout", queue_timeout, allow_none=True)
        self.name = check_name(name)
        self.clock = check_clock(clock)
        self.bus = check_bus(bus)
        self._lock = threading.Lock()
        self._in_use = 0
        # An ordered dict: FIFO pop from the front and O(1) removal of a
        # waiter that gives up from the middle.
        self._waiters: OrderedDict[_Waiter, None] = OrderedDict()
        # A thread has no event loop, so the system clock cannot time it out;
        # an injected clock (FakeClock) can, and wakes it in virtual time.
        self._sync_timers = not isinstance(self.clock, SystemClock) and hasattr(self.clock, "call_later")

    @property
    def max_concurrent(self) -> int:
        """How many calls may run at once."""
        return self._max

    @property
    def max_queue(self) -> int:
        """How many calls may wait for a slot."""
        return self._max_queue

    @property
    def in_use(self) -> int:
        """Slots held right now (running calls, plus waiters just handed one)."""
        return self._in_use

    @property
    def queued(self) -> int:
        """Calls waiting for a slot right now."""
        return len(self._waiters)

    def __repr__(self) -> str:
        extra = "" if self.name is None else f", name={self.name!r}"
        return (
            f"bulkhead({self._max}, max_queue={self._max_queue}, queue_timeout={self.queue_timeout!r}{extra})"
        )

    # --- slot bookkeeping (all under self._lock) ------------------------------

    def _release_locked(self) -> None:
        waiters = self._waiters
        while waiters:
            w, _ = waiters.popitem(last=False)
            w.state = _GRANTED
            if w.wake():
                return  # the slot changed hands; in_use is unchanged
            w.state = _EXPIRED
        self._in_use -= 1

    def _release(self) -> None:
        with self._lock:
            self._release_locked()

    def _expire(self, w: _Waiter) -> None:
        """Timer callback: the waiter's time in the queue ran out."""
        with self._lock:
            if w.state != _QUEUED:
                return
            del self._waiters[w]
            w.state = _EXPIRED
            w.wake()

    def _abandon(self, w: _Waiter) -> None:
        """The waiter was interrupted (cancelled, KeyboardInterrupt): give up its place or slot."""
        with self._lock:
            if w.state == _GRANTED:
                self._release_locked()  # pass the turn on: no lost wake-up
            elif w.state == _QUEUED:
                del self._waiters[w]
            w.state = _EXPIRED

    def _settle(self, w: _Waiter) -> bool:
        """The waiter stopped waiting normally: True if it holds a slot, else leave the queue."""
        with self._lock:
            if w.state == _QUEUED:
                del self._waiters[w]
                w.state = _EXPIRED
            return w.state == _GRANTED

    def _wait_bound(self) -> float | None:
        """Seconds a new waiter may wait: min(queue_timeout, ambient deadline), or None."""
        bound = self.queue_timeout
        ambient = _deadline.get()
        if ambient is not None:
            left = ambient.remaining()
            if bound is None or left < bound:
                bound = left
        return bound

    def _reject(self, operation: str | None, waited: float | None) -> BulkheadFullError:
        """Emit ``BulkheadRejected`` and return a fresh error to raise."""
        bus = self.bus
        if bus.wants(BulkheadRejected):
            bus.emit(
                BulkheadRejected(
                    policy="bulkhead",
                    name=self.name,
                    operation=operation,
                    time=self.clock.monotonic(),
                    retry_after=None,
                )
            )
        if waited is None:
            return BulkheadFullError(self.name)
        return BulkheadFullError(self.name, f"still full after waiting {waited:g}s in the queue")

    # --- acquiring -------------------------------------------------------------

    async def _acquire_async(self, operation: str | None) -> None:
        """Take a slot, waiting in the queue if allowed; raise BulkheadFullError otherwise."""
        bound: float | None = None
        w: _AsyncWaiter | None = None
        with self._lock:
            if self._in_use < self._max:
                self._in_use += 1
                return
            if len(self._waiters) < self._max_queue:
                bound = self._wait_bound()
                if bound is None or bound > 0:
                    w = _AsyncWaiter(asyncio.get_running_loop())
                    self._waiters[w] = None
        if w is None:
            raise self._reject(operation, None)
        if bound is not None:
            # Outside the lock: a clock may run a due callback synchronously.
            w.handle = call_later(self.clock, bound, functools.partial(self._expire, w))
        try:
            await w.fut
        except BaseException:
            self._abandon(w)
            raise
        finally:
            if w.handle is not None:
                w.handle.cancel()
        if w.state != _GRANTED:
            raise self._reject(operation, bound)

    def _acquire_sync(self, operation: str | None) -> None:
        """Blocking version of :meth:`_acquire_async` for threads."""
        bound: float | None = None
        w: _SyncWaiter | None = None
        with self._lock:
            if self._in_use < self._max:
                self._in_use += 1
                return
            if len(self._waiters) < self._max_queue:
                bound = self._wait_bound()
                if bound is None or bound > 0:
                    w = _SyncWaiter()
                    self._waiters[w] = None
        if w is None:
            raise self._reject(operation, None)
        try:
            if bound is None:
                w.gate.acquire()
            else:
                self._block(w, bound)
        except BaseException:  # KeyboardInterrupt while blocked, for instance
            self._abandon(w)
            raise
        finally:
            if w.handle is not None:
                w.handle.cancel()
        # Still queued if the clock ran out before any timer fired.
        if not self._settle(w):
            raise self._reject(operation, bound)

    def _block(self, w: _SyncWaiter, bound: float) -> None:
        clock = self.clock
        if self._sync_timers:
            try:
                w.handle = call_later(clock, bound, functools.partial(self._expire, w))
            except RuntimeError:  # a clock whose timers need a running loop
                w.handle = None
        end = clock.monotonic() + bound
        # Real waiting measured against the clock: with the system clock this
        # is an ordinary timed wait; a virtual clock's timer wakes us early.
        while True:
            left = end - clock.monotonic()
            if left <= 0 or w.gate.acquire(timeout=left):
                return

    # --- policy layers ---------------------------------------------------------

    def wrap_async(self, inner: AsyncLayer) -> AsyncLayer:
        """Return the async layer that runs *inner* holding a slot."""
        lock = self._lock
        limit = self._max
        acquire = self._acquire_async
        release = self._release
        me = self

        async def run(ctx: CallContext, fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
            with lock:
                free = me._in_use < limit
                if free:
                    me._in_use += 1
            if not free:
                await acquire(ctx.operation)
            try:
                return await inner(ctx, fn, args, kwargs)
            finally:
                release()

        return run

    def wrap_sync(self, inner: SyncLayer) -> SyncLayer:
        """Return the sync layer that runs *inner* holding a slot (thread-safe)."""
        lock = self._lock
        limit = self._max
        acquire = self._acquire_sync
        release = self._release
        me = self

        def run(ctx: CallContext, fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
            with lock:
                free = me._in_use < limit
                if free:
                    me._in_use += 1
            if not free:
                acquire(ctx.operation)
            try:
                return inner(ctx, fn, args, kwargs)
            finally:
                release()

        return run

    # --- context managers ------------------------------------------------------

    async def __aenter__(self) -> Bulkhead:
        await self._acquire_async(None)
        push_scope(self, True)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pop_scope(self)
        self._release()

    def __enter__(self) -> Bulkhead:
        self._acquire_sync(None)
        push_scope(self, True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pop_scope(self)
        self._release()


def bulkhead(
    max_concurrent: int,
    *,
    max_queue: int = 0,
    queue_timeout: float | timedelta | None = None,
    name: str | None = None,
    clock: Clock | None = None,
    bus: EventBus | None = None,
) -> Bulkhead:
    """Let at most *max_concurrent* calls run at once; up to *max_queue* more wait, FIFO.

    A call that finds every slot taken and the queue full, or that waits
    longer than *queue_timeout* (or than the ambient deadline of an
    enclosing ``timeout``), is rejected with a fresh
    :class:`BulkheadFullError` and a ``BulkheadRejected`` event; the
    function is not called. Cancellation and other control-flow exceptions,
    while queued or running, always give the slot (or the place in the
    queue) back; a waiter handed a slot but cancelled before it runs passes
    it on to the next waiter. No event loop is bound at construction, and
    one bulkhead may guard async and sync (threaded) callers together.

    Args:
        max_concurrent: Calls that may run at once (int >= 1).
        max_queue: Calls that may wait for a slot (int >= 0); 0 rejects at
            once when full.
        queue_timeout: Longest wait in the queue, seconds > 0 (finite) or a
            ``timedelta``; None waits until a slot frees or the ambient
            deadline passes.
        name: Name reported in events and errors.
        clock: Time source for queue timeouts; ``FakeClock`` in tests.
        bus: Event bus (default: ``default_bus``).

    Returns:
        The :class:`Bulkhead` policy: decorator, ``.call``, ``async with`` and ``with``.

    Raises:
        TypeError: A parameter has the wrong type.
        ValueError: A parameter is out of range (``max_concurrent < 1``,
            ``max_queue < 0``, ``queue_timeout`` <= 0, NaN or infinite).
    """
    return Bulkhead(
        max_concurrent, max_queue=max_queue, queue_timeout=queue_timeout, name=name, clock=clock, bus=bus
    )
