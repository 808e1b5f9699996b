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

import functools
import threading
from collections import deque
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias

from ._clock import Clock, DefaultClock, SystemClock, TimerHandle, call_later
from ._context import CallContext, _deadline
from ._errors import BulkheadFullError
from ._events import BulkheadRejected, Event, EventBus
from ._lazy import LazyModule
from ._pipeline import Args, AsyncLayer, Kwargs, Policy, SyncLayer
from ._tracking import track
from ._validate import check_bus, check_clock, check_duration, check_int, check_name

if TYPE_CHECKING:
    import asyncio
else:
    asyncio = LazyModule("asyncio", globals())  # imported on first use

__all__ = ["Bulkhead", "bulkhead"]

# Waiter states; changed only under the bulkhead's lock.
_QUEUED = 0
_GRANTED = 1  # handed a slot: it now owns one and must release it
_GONE = 2  # timed out, interrupted, or done with the slot it was handed


def _resolve(fut: asyncio.Future[None]) -> None:
    # The waiting task may have been cancelled meanwhile; its handler reads the state.
    if not fut.done():
        fut.set_result(None)


class _AsyncWaiter:
    """A coroutine waiting for a slot: the future it awaits, and its state."""

    __slots__ = ("bound", "end", "fut", "handle", "loop", "state")

    def __init__(self, bound: float | None) -> None:
        # The running loop's future: no loop is bound before a call has to wait.
        loop = self.loop = asyncio._get_running_loop()
        self.fut: asyncio.Future[None] = loop.create_future()  # type: ignore[union-attr]
        self.state = _QUEUED
        self.bound = bound
        self.end = 0.0  # set by the bulkhead when the waiter joins the queue
        self.handle: TimerHandle | None = None

    def wake(self) -> bool:
        """Wake the waiter from any thread; False if its loop is gone."""
        fut = self.fut
        loop = self.loop
        if loop is asyncio._get_running_loop():
            if not fut.done():  # _resolve, inlined: most calls of a busy bulkhead come here
                fut.set_result(None)
            return True
        try:
            loop.call_soon_threadsafe(_resolve, fut)  # type: ignore[union-attr]
        except RuntimeError:  # the loop is closed: nobody is left to run
            return False
        return True


class _SyncWaiter:
    """A thread blocked on its own pre-acquired lock until woken."""

    __slots__ = ("bound", "end", "gate", "handle", "state")

    def __init__(self, bound: float | None) -> None:
        self.gate = threading.Lock()
        self.gate.acquire()
        self.state = _QUEUED
        self.bound = bound
        self.end = 0.0  # set by the bulkhead when the waiter joins the queue
        self.handle: TimerHandle | None = None

    def wake(self) -> bool:
        """Release the gate the waiting thread blocks on."""
        self.gate.release()
        return True


def _has_sync_timers(clock: Clock) -> bool:
    """True if *clock* can wake a blocked thread in its own time (not the system clock)."""
    return not isinstance(clock, SystemClock) and hasattr(clock, "call_later")


_Waiter: TypeAlias = "_AsyncWaiter | _SyncWaiter"
_FULL: Any = object()  # "rejected at once", returned by _join_locked


class Bulkhead(Policy):
    """The policy returned by :func:`bulkhead`; also ``async with`` / ``with``.

    Its state (slots and queue) is shared by every function it decorates and
    every block that enters it, across threads and event loops.
    """

    kind: ClassVar[str] = "bulkhead"
    emits: ClassVar[tuple[type[Event], ...]] = (BulkheadRejected,)

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
        # FIFO of waiters. One that leaves early is only marked _GONE and
        # skipped when it reaches the front (O(1) instead of a deque scan);
        # _queued counts the live ones and _leave_locked bounds the dead weight.
        self._queue: deque[_Waiter] = deque()
        self._queued = 0
        # A thread has no event loop, so the system clock cannot time it out;
        # an injected clock (FakeClock) can, and wakes it in virtual time.
        self._sync_timers = _has_sync_timers(self.clock)
        track(self)  # weakly, for resilient.testing.reset_policies()

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
        return self._queued

    def __repr__(self) -> str:
        extra = "" if self.name is None else f", name={self.name!r}"
        return (
            f"bulkhead({self._max}, max_queue={self._max_queue}, queue_timeout={self.queue_timeout!r}{extra})"
        )

    def reset(self) -> None:
        """Turn away every call waiting for a slot: each gets a fresh BulkheadFullError.

        Calls running keep their slots until they finish: taking a slot from a
        running call would let more than *max_concurrent* run at once.
        """
        with self._lock:
            waiting = [w for w in self._queue if w.state == _QUEUED]
            for w in waiting:
                self._leave_locked(w)
            self._queue.clear()
        for w in waiting:
            w.wake()  # outside the lock: the woken caller settles under it

    _reset_for_tests = reset

    # --- slot bookkeeping (the *_locked methods run under self._lock) ----------

    def _join_locked(self, factory: Callable[[float | None], _Waiter]) -> Any:
        """Take a free slot (None), queue a new waiter (it), or say _FULL."""
        if self._in_use < self._max:
            self._in_use += 1
            return None
        if self._queued >= self._max_queue:
            return _FULL
        bound = self.queue_timeout
        ambient = _deadline.get()
        if ambient is not None:
            left = ambient.remaining()
            if left <= 0:
                return _FULL
            if bound is None or left < bound:
                bound = left
        w = factory(bound)
        # The wait is timed from joining the queue, not from arming a timer.
        w.end = 0.0 if bound is None else self.clock.monotonic() + bound
        self._queue.append(w)
        self._queued += 1
        return w

    def _release_locked(self) -> None:
        queue = self._queue
        while queue:
            w = queue.popleft()
            if w.state != _QUEUED:
                continue
            self._queued -= 1
            w.state = _GRANTED
            if w.wake():
                return  # the slot changed hands; in_use is unchanged
            w.state = _GONE
        self._in_use -= 1

    def _take(self, factory: Callable[[float | None], _Waiter]) -> Any:
        """:meth:`_join_locked` under the lock."""
        lock = self._lock
        lock.acquire()  # rather than `with`: measurably cheaper here
        try:
            return self._join_locked(factory)
        finally:
            lock.release()

    def _give_back(self) -> None:
        """Release a slot: hand it to the first waiter, or free it."""
        lock = self._lock
        lock.acquire()
        if self._queued:
            try:
                self._release_locked()
            finally:
                lock.release()
        elif self._in_use > 0:
            self._in_use -= 1
            lock.release()
        else:
            lock.release()
            raise RuntimeError(f"{self!r} released more often than it was entered")

    def _leave_locked(self, w: _Waiter) -> None:
        w.state = _GONE
        self._queued -= 1
        if len(self._queue) > 2 * self._queued + 32:
            self._queue = deque(x for x in self._queue if x.state == _QUEUED)

    def _expire(self, w: _Waiter) -> None:
        """Timer callback: the waiter's time in the queue ran out."""
        with self._lock:
            if w.state == _QUEUED:
                self._leave_locked(w)
                w.wake()

    def _abandon(self, w: _Waiter) -> None:
        """The waiter was interrupted (cancelled, KeyboardInterrupt): give up its place or slot."""
        with self._lock:
            if w.state == _GRANTED:
                w.state = _GONE
                self._release_locked()  # pass the turn on: no lost wake-up
            elif w.state == _QUEUED:
                self._leave_locked(w)
        if w.handle is not None:
            w.handle.cancel()

    def _settle(self, w: _Waiter, operation: str | None) -> None:
        """The wait ended normally: keep the slot handed over, or leave the queue and reject."""
        if w.handle is not None:
            w.handle.cancel()
        with self._lock:
            if w.state == _QUEUED:  # a thread whose clock ran out before any timer fired
                self._leave_locked(w)
            granted = w.state == _GRANTED
        if not granted:
            raise self._reject(operation, w.bound)

    def _arm(self, w: _Waiter) -> None:
        # Outside the lock: a clock may run a due callback synchronously.
        assert w.bound is not None
        delay = max(0.0, w.end - self.clock.monotonic())
        w.handle = call_later(self.clock, delay, functools.partial(self._expire, w))

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

    def _wait_sync(self, w: Any, operation: str | None) -> None:
        """Block until waiter *w* (from :meth:`_take`) is handed a slot, or raise BulkheadFullError."""
        if w is _FULL:
            raise self._reject(operation, None)
        clock = self.clock
        try:
            if w.bound is None:
                w.gate.acquire()
            else:
                # A default clock may serve a virtual one now (a pipeline's, use_clock's).
                if self._sync_timers or (
                    type(clock) is DefaultClock and _has_sync_timers(clock.serving() or clock)
                ):
                    try:
                        self._arm(w)
                    except RuntimeError:  # a clock whose timers need a running loop
                        w.handle = None
                # Real waiting measured against the clock: with the system clock
                # an ordinary timed wait; a virtual clock's timer wakes us early.
                end = w.end
                while (left := end - clock.monotonic()) > 0:
                    if w.gate.acquire(timeout=min(left, threading.TIMEOUT_MAX)):
                        break
        except BaseException:  # KeyboardInterrupt while blocked, for instance
            self._abandon(w)
            raise
        self._settle(w, operation)

    # --- policy layers ---------------------------------------------------------

    def wrap_async(self, inner: AsyncLayer) -> AsyncLayer:
        """Return the async layer that runs *inner* holding a slot."""
        lock = self._lock
        limit = self._max
        join = self._join_locked
        hand_over = self._release_locked
        me = self

        async def run(ctx: CallContext, fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
            # _take, the wait and _give_back inlined: this is the hot path, and
            # a free slot must cost no more than a counter check.
            lock.acquire()
            if me._in_use < limit:
                me._in_use += 1
                lock.release()
            else:
                try:
                    w = join(_AsyncWaiter)
                finally:
                    lock.release()
                if w is _FULL:
                    raise me._reject(ctx.operation, None)
                try:
                    if w.bound is not None:
                        me._arm(w)
                    await w.fut
                except BaseException:
                    me._abandon(w)
                    raise
                # Woken, so the state is final (set under the lock before the
                # wake-up): no lock needed to read it, nor to keep a slot.
                if w.handle is not None or w.state != _GRANTED:
                    me._settle(w, ctx.operation)
            try:
                return await inner(ctx, fn, args, kwargs)
            finally:
                lock.acquire()
                if me._queued:
                    try:
                        hand_over()
                    finally:
                        lock.release()
                else:
                    me._in_use -= 1
                    lock.release()

        return run

    def wrap_sync(self, inner: SyncLayer) -> SyncLayer:
        """Return the sync layer that runs *inner* holding a slot (thread-safe)."""
        take = self._take
        wait = self._wait_sync
        give_back = self._give_back

        def run(ctx: CallContext, fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
            w = take(_SyncWaiter)
            if w is not None:
                wait(w, ctx.operation)
            try:
                return inner(ctx, fn, args, kwargs)
            finally:
                give_back()

        return run

    # --- context managers ------------------------------------------------------
    # An entry holds no state of its own (slots are anonymous), so unlike
    # timeout these need no per-entry scope, which would cost ~0.6 µs.

    async def __aenter__(self) -> Bulkhead:
        """Take a slot for the block, waiting in the queue if allowed (else BulkheadFullError)."""
        w = self._take(_AsyncWaiter)
        if w is not None:
            # As in wrap_async's layer (inlined here too: no extra coroutine).
            if w is _FULL:
                raise self._reject(None, None)
            try:
                if w.bound is not None:
                    self._arm(w)
                await w.fut
            except BaseException:
                self._abandon(w)
                raise
            if w.handle is not None or w.state != _GRANTED:
                self._settle(w, None)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Give the slot back (to the first waiter, if any)."""
        self._give_back()

    def __enter__(self) -> Bulkhead:
        """Take a slot for the block, blocking in the queue if allowed (else BulkheadFullError)."""
        w = self._take(_SyncWaiter)
        if w is not None:
            self._wait_sync(w, None)
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Give the slot back (to the first waiter, if any)."""
        self._give_back()


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

    A call finding no slot and no room in the queue, or waiting longer than
    *queue_timeout* or the ambient deadline, gets a fresh
    :class:`BulkheadFullError` (and a ``BulkheadRejected`` event) without
    the function being called. Cancellation, queued or running, never leaks
    a slot; a waiter handed one but cancelled before it runs passes it on.

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
