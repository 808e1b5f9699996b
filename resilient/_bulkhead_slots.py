"""The bulkhead's slots and FIFO queue: bookkeeping that survives an interrupt.

One thread lock guards a counter and an ordered queue of waiters, so the
same bulkhead can be shared by coroutines on any number of event loops and
by threads. A free slot costs a lock round trip and an integer check:
no future, no task. Only a caller that has to wait allocates a waiter.

Slots are handed over, not re-contended: releasing a slot while someone
waits gives it directly to the first waiter. Hence the invariant ``queued >
0 implies in_use == max_concurrent``, which is why the fast path only
compares the counter. A waiter handed a slot but cancelled before it runs
releases it at once, which hands it on to the next waiter: no wake-up is
ever lost.

Interrupts. A ``KeyboardInterrupt`` (or any exception a signal handler
raises) can land wherever the interpreter checks for signals: when a
Python function starts, when any call returns, on a loop's back edge. Never
between two plain attribute stores. So:

- the lock is never kept by an interrupt: slow paths take it with
  ``with``; the inlined fast paths use ``acquire()``/``release()`` (cheaper)
  inside a ``try`` whose handler lets the lock go if this thread still holds
  it (the lock is an ``RLock`` for its ``_is_owned()``), and a release that
  an interrupt stopped, even while waiting for the lock, is completed by
  :meth:`Slots._finish_give_back` before the interrupt propagates;
- a lock section does what can be interrupted (calls) first and commits
  with plain stores, or it is *restartable*: each of its steps leaves the
  state consistent, so running it again finishes the job. The except
  clauses that run it again are the "interrupted? finish, then re-raise"
  pattern below (a second interrupt during the clean-up is not covered);
- the caller owns a waiter before it joins the queue, so whatever happens
  the caller can see from the waiter's state whether it holds a slot (a
  function's return value is lost if an interrupt lands as it returns).

One gap is left, and only by the context-manager forms: an interrupt that
lands as ``__exit__``/``__aexit__`` starts, before its first line, leaves
that block's slot taken. The decorator and ``call`` forms have no such gap.
"""

from __future__ import annotations

import functools
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias

from ._clock import Clock, DefaultClock, SystemClock, TimerHandle, call_later
from ._context import _deadline
from ._errors import BulkheadFullError
from ._events import BulkheadRejected, EventBus
from ._lazy import LazyModule
from ._waits import WaitReporter

if TYPE_CHECKING:
    import asyncio
else:
    asyncio = LazyModule("asyncio", globals())  # imported on first use

__all__ = ["Slots", "running_loop_getter"]

# Waiter states; changed only under the bulkhead's lock.
_NEW = 0  # not in the queue (yet): holds nothing
_QUEUED = 1
_GRANTED = 2  # handed a slot: it owns one until it gives it back
_GONE = 3  # timed out, interrupted, or done: holds nothing


def running_loop_getter() -> Callable[[], object]:
    """``asyncio._get_running_loop`` (for async layers: asyncio is loaded by then, or now)."""
    return asyncio._get_running_loop


def _resolve(fut: asyncio.Future[None]) -> None:
    # The waiting task may have been cancelled meanwhile; its handler reads the state.
    if not fut.done():
        fut.set_result(None)


class _AsyncWaiter:
    """A coroutine waiting for a slot: the future it awaits, and its state."""

    __slots__ = ("bound", "end", "fut", "handle", "joined", "loop", "state", "woken")
    end: float
    joined: float

    def __init__(self) -> None:
        # The running loop's future: no loop is bound before a call has to wait.
        loop = self.loop = asyncio._get_running_loop()
        self.fut: asyncio.Future[None] = loop.create_future()  # type: ignore[union-attr]
        self.state = _NEW
        self.woken = False
        self.bound: float | None = None
        self.handle: TimerHandle | None = None
        # `end` and `joined` are set when it joins the queue, if needed (see _join_locked).

    def wake(self) -> bool:
        """Wake the waiter from any thread (idempotent); False if its loop is gone."""
        fut = self.fut
        loop = self.loop
        if loop is asyncio._get_running_loop():
            self.woken = True
            if not fut.done():
                fut.set_result(None)
            return True
        if self.woken:
            return True
        try:
            # Scheduling twice is harmless (_resolve checks), so an interrupted
            # wake-up is simply repeated.
            loop.call_soon_threadsafe(_resolve, fut)  # type: ignore[union-attr]
        except RuntimeError:  # the loop is closed: nobody is left to run
            return False
        self.woken = True
        return True


class _SyncWaiter:
    """A thread blocked on its own pre-acquired lock until woken."""

    __slots__ = ("bound", "end", "gate", "handle", "joined", "state", "woken")
    end: float
    joined: float

    def __init__(self) -> None:
        self.gate = threading.Lock()
        self.gate.acquire()
        self.state = _NEW
        self.woken = False
        self.bound: float | None = None
        self.handle: TimerHandle | None = None

    def wake(self) -> bool:
        """Release the gate the waiting thread blocks on (once, however often called)."""
        if not self.woken:
            self.woken = True  # no signal check between this store and the release
            self.gate.release()
        return True


_Waiter: TypeAlias = "_AsyncWaiter | _SyncWaiter"


def _has_sync_timers(clock: Clock) -> bool:
    """True if *clock* can wake a blocked thread in its own time (not the system clock)."""
    return not isinstance(clock, SystemClock) and hasattr(clock, "call_later")


class Slots:
    """The slot counter, the queue, and every step that changes them.

    :class:`~resilient.Bulkhead` inherits it and inlines the fast paths.
    """

    name: str | None
    clock: Clock
    bus: EventBus
    queue_timeout: float | None
    _max: int
    _max_queue: int

    def _init_slots(self) -> None:
        # Re-entrant only so that a handler can ask whether this thread holds
        # it (_is_owned); nothing takes it twice.
        self._lock = threading.RLock()
        self._owned: Callable[[], bool] = self._lock._is_owned  # type: ignore[attr-defined]
        self._in_use = 0
        # FIFO of waiters. One that leaves early is only marked _GONE and
        # skipped when it reaches the front (O(1) instead of a deque scan);
        # _queued counts the live ones and _leave_locked bounds the dead weight.
        self._queue: deque[_Waiter] = deque()
        self._queued = 0
        # A thread has no event loop, so the system clock cannot time it out;
        # an injected clock (FakeClock) can, and wakes it in virtual time.
        self._sync_timers = _has_sync_timers(self.clock)

    def reset(self) -> None:
        """Turn away every call waiting for a slot: each gets a fresh BulkheadFullError.

        Calls running keep their slots until they finish: taking a slot from a
        running call would let more than *max_concurrent* run at once.
        """
        with self._lock:
            for w in [x for x in self._queue if x.state == _QUEUED]:
                self._leave_locked(w)
                w.wake()  # it sees it is gone and rejects itself, as on a queue timeout

    _reset_for_tests = reset

    # --- under the lock ----------------------------------------------------------

    def _join_locked(self, w: _Waiter, stamp: bool = False) -> None:
        """Give *w* a free slot (GRANTED), a place in the queue (QUEUED), or nothing (NEW: full).

        With *stamp*, note when it joined (``w.joined``) even without a queue
        timeout: the wait will be reported.
        """
        if self._in_use < self._max:
            self._in_use += 1
            w.state = _GRANTED
            return
        if self._queued >= self._max_queue:
            return
        bound = self.queue_timeout
        ambient = _deadline.get()
        if ambient is not None:
            left = ambient.remaining()
            if left <= 0:
                return
            if bound is None or left < bound:
                bound = left
        now = self.clock.monotonic() if stamp or bound is not None else 0.0
        # Everything that can be interrupted is done: commit with plain stores.
        w.bound = bound
        w.joined = now  # read only if the wait is reported with its length
        # The wait is timed from joining the queue, not from arming a timer.
        w.end = 0.0 if bound is None else now + bound
        w.state = _QUEUED
        self._queued += 1
        self._queue.append(w)  # an interrupt after this: the caller's handler abandons w

    def _pass_on_locked(self) -> None:
        """Hand free slots to the first waiters and wake them.

        Restartable: a granted waiter stays at the front until it has been
        woken, and waking is idempotent, so running this again after an
        interrupt finishes what the interrupted run started.
        """
        queue = self._queue
        while queue:
            w = queue[0]
            if w.state == _QUEUED:
                if self._in_use >= self._max:
                    return
                w.state = _GRANTED
                self._queued -= 1
                self._in_use += 1
            elif w.state == _GONE:
                queue.popleft()
                continue
            # Granted, now or by an interrupted run that could not wake it.
            if not w.wake():
                # Its event loop is closed: nobody will run it or give the slot back.
                w.state = _GONE
                self._in_use -= 1
            queue.popleft()
            if self._in_use >= self._max:
                return  # (the usual case: one slot freed, one handed over)

    def _leave_locked(self, w: _Waiter) -> None:
        w.state = _GONE
        self._queued -= 1
        if len(self._queue) > 2 * self._queued + 32:
            # Keep granted waiters: one may be at the front, not woken yet.
            self._queue = deque(x for x in self._queue if x.state != _GONE)

    # --- the slow path -----------------------------------------------------------

    def _give_back(self) -> None:
        """Release a slot: hand it to the first waiter, or free it.

        Only for exception handlers: the normal paths inline this (an
        interrupt as this method starts would keep the slot).
        """
        lock = self._lock
        freed = False
        try:
            lock.acquire()
            self._in_use -= 1
            freed = True
            if self._queued:
                self._pass_on_locked()
            lock.release()
        except BaseException:
            self._finish_give_back(freed)
            raise

    def _finish_give_back(self, freed: bool) -> None:
        """Complete a slot's release that an interrupt stopped part-way; the caller re-raises.

        Args:
            freed: Whether the interrupted code had already decremented ``in_use``.
        """
        lock = self._lock
        if not self._owned():
            lock.acquire()  # interrupted while waiting for the lock
        try:
            if not freed and self._in_use > 0:
                self._in_use -= 1
            if self._queue:  # (not _queued: a waiter granted but not woken yet is no longer counted)
                self._pass_on_locked()  # restartable: finishes an interrupted hand-over
        finally:
            lock.release()

    def _expire(self, w: _Waiter) -> None:
        """Timer callback: the waiter's time in the queue ran out."""
        with self._lock:
            if w.state == _QUEUED:
                self._leave_locked(w)
                try:
                    w.wake()
                except BaseException:
                    w.wake()  # interrupted: make sure it wakes to see it is gone
                    raise

    def _abandon(self, w: _Waiter) -> None:
        """The wait was interrupted (cancelled, KeyboardInterrupt, a rejection): give up its place or slot.

        Idempotent: a waiter that holds nothing is left alone.
        """
        if w.handle is not None:
            w.handle.cancel()
        with self._lock:
            if w.state == _GRANTED:
                # Pass the turn on: no lost wake-up.
                w.state = _GONE
                self._in_use -= 1
                if self._queued:
                    try:
                        self._pass_on_locked()
                    except BaseException:
                        self._pass_on_locked()
                        raise
            elif w.state == _QUEUED:
                self._leave_locked(w)

    def _settle(self, w: _Waiter) -> bool:
        """The wait ended without an exception: True if *w* was handed a slot (else it leaves the queue)."""
        if w.handle is not None:
            w.handle.cancel()
        with self._lock:
            if w.state == _QUEUED:  # a thread whose clock ran out before any timer fired
                self._leave_locked(w)
            return w.state == _GRANTED

    def _arm(self, w: _Waiter) -> None:
        # Outside the lock: a clock may run a due callback synchronously.
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

    async def _wait_async(self, w: _AsyncWaiter) -> None:
        """``async with``'s wait (the layer inlines its own): return holding a slot, or raise.

        On any exception *w* holds nothing.
        """
        try:
            with self._lock:
                self._join_locked(w)
            if w.state == _GRANTED:
                return  # a slot freed up since the fast path looked
            if w.state == _NEW:
                raise self._reject(None, None)
            if w.bound is not None:
                self._arm(w)
            await w.fut
            if (w.handle is not None or w.state != _GRANTED) and not self._settle(w):
                raise self._reject(None, w.bound)
        except BaseException:
            try:
                self._abandon(w)
            except BaseException:
                self._abandon(w)  # interrupted: finish (it is idempotent), then re-raise
                raise
            raise

    def _wait_sync(self, w: _SyncWaiter, operation: str | None, reporter: WaitReporter | None) -> None:
        """Like :meth:`_wait_async`, blocking the thread."""
        try:
            with self._lock:
                self._join_locked(w, reporter is not None and reporter.needs_time)
            state = w.state
            if state == _GRANTED:
                return
            if state == _NEW:
                raise self._reject(operation, None)
            if w.bound is None:
                w.gate.acquire()
            else:
                clock = self.clock
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
            if not self._settle(w):
                raise self._reject(operation, w.bound)
            if (
                reporter is not None
                and reporter.listening
                and not (reporter.gate is not None and reporter.gate.waiters_admitted)
            ):
                waited = self.clock.monotonic() - w.joined if reporter.needs_time else 0.0
                reporter.report(waited, operation, 2)
        except BaseException:
            try:
                self._abandon(w)
            except BaseException:
                self._abandon(w)
                raise
            raise
