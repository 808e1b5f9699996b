"""A rate limiter's in-process state: GCRA, and a FIFO queue of waiting calls.

GCRA (the generic cell rate algorithm, a token bucket in O(1) state) keeps
one number, the *theoretical arrival time* ``tat``. With ``interval`` the
seconds between permits at the sustained rate and ``limit = burst *
interval``, a call at time ``now`` reserves ``new = max(tat, now) +
interval`` and may run from ``new - limit`` on: at once if that is not in
the future (``tat`` becomes ``new``), else after a wait.

A call that waits keeps its reservation (``tat`` moves past it) and joins a
FIFO queue. The queued reservations are always the last ones, one interval
apart, so the i-th of ``queued`` waiters runs at ``tat - (queued - 1 - i) *
interval - limit``: no waiter stores a time of its own. Only the first
waiter (the *head*) sleeps on the clock; the others wait to be told they
are the head. A waiter that leaves (cancelled, interrupted) gives its
reservation back: ``tat`` moves back one interval, which moves every later
waiter one interval earlier, so nobody is delayed by a call that never ran.

Admissions are conformant in the time they actually happen: a head that
wakes later than its slack allows (a busy event loop) pushes the rest of the
queue back by its lateness, so late waiters never run in a bunch.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from typing import TYPE_CHECKING, Any, TypeAlias

from ._clock import Clock, blocking_sleep
from ._context import _deadline
from ._lazy import LazyModule

if TYPE_CHECKING:
    import asyncio
else:
    asyncio = LazyModule("asyncio", globals())  # imported on first use

__all__ = ["EPSILON", "AsyncWaiter", "Gcra", "SyncWaiter"]

EPSILON = 1e-9
"""Seconds of float noise tolerated when comparing times (a permit due now is due)."""

# Waiter states; changed only under the engine's lock.
_QUEUED = 0
_DONE = 1  # admitted: its reservation is spent
_GONE = 2  # left the queue (cancelled, interrupted, its loop closed): reservation returned


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class AsyncWaiter:
    """A coroutine in the queue: the future it awaits until it is the head."""

    __slots__ = ("fut", "head", "loop", "state")

    def __init__(self) -> None:
        loop = self.loop = asyncio._get_running_loop()
        self.fut: asyncio.Future[None] = loop.create_future()  # type: ignore[union-attr]
        self.state = _QUEUED
        self.head = False

    def wake(self) -> bool:
        """Tell the waiter it is the head, from any thread; False if its loop is gone."""
        loop = self.loop
        if loop is asyncio._get_running_loop():
            _resolve(self.fut)
            return True
        try:
            loop.call_soon_threadsafe(_resolve, self.fut)  # type: ignore[union-attr]
        except RuntimeError:  # the loop is closed: nobody is left to run
            return False
        return True


class SyncWaiter:
    """A thread in the queue, blocked on its own pre-acquired lock until it is the head."""

    __slots__ = ("gate", "head", "state")

    def __init__(self) -> None:
        self.gate = threading.Lock()
        self.gate.acquire()
        self.state = _QUEUED
        self.head = False

    def wake(self) -> bool:
        """Release the gate the waiting thread blocks on."""
        self.gate.release()
        return True


_Waiter: TypeAlias = "AsyncWaiter | SyncWaiter"


class Gcra:
    """GCRA state and its queue, guarded by one thread lock (any loop, any thread).

    Args:
        interval: Seconds between permits at the sustained rate.
        burst: Permits that may be taken at once after an idle period.
        clock: Where time is read and waiting sleeps.
    """

    __slots__ = ("clock", "interval", "limit", "lock", "queue", "queued", "tat")

    def __init__(self, interval: float, burst: int, clock: Clock) -> None:
        self.interval = interval
        self.limit = burst * interval
        self.clock = clock
        self.lock = threading.Lock()
        self.tat = -math.inf
        # FIFO of waiters; one that leaves is marked _GONE and skipped when it
        # reaches the front. `queued` counts the live ones.
        self.queue: deque[_Waiter] = deque()
        self.queued = 0

    # --- under the lock ----------------------------------------------------------

    def join_locked(self, now: float, max_wait: float, factory: type[_Waiter]) -> Any:
        """Queue a waiter for the next reservation, unless its wait is too long.

        Called when the fast path (a free permit and nobody queued) failed.

        Returns:
            The new waiter, or (a float) the seconds the call would have had
            to wait: more than *max_wait*, or up to the ambient deadline.
        """
        interval = self.interval
        tat = self.tat
        # Behind queued waiters a reservation follows theirs, even if they
        # are overdue (their lateness is accounted for when they run).
        new = (tat if self.queued or tat > now else now) + interval
        wait = new - self.limit - now
        if wait > max_wait:
            return wait
        if wait > 0:
            ambient = _deadline.get()
            if ambient is not None and wait >= ambient.remaining():
                return wait  # it could only start when (or after) the deadline ends it
        w = factory()
        w.head = not self.queued
        self.queue.append(w)
        self.queued += 1
        self.tat = new
        return w

    def head_due_locked(self) -> float:
        """When the head waiter may run."""
        return self.tat - (self.queued - 1) * self.interval - self.limit

    def admit_head_locked(self, now: float) -> None:
        """The head's time has come: spend its reservation and make the next waiter the head."""
        interval = self.interval
        # A call admitted later than `reservation - interval` finds no slack
        # left in the bucket: the rest of the schedule moves back by that much.
        slack_end = self.tat - self.queued * interval
        if now > slack_end:
            self.tat += now - slack_end
        # The head is at the front: whoever made it the head dropped those that left before it.
        w = self.queue.popleft()
        assert w.head
        assert w.state == _QUEUED
        w.state = _DONE
        self.queued -= 1
        self.pass_head_locked()

    def pass_head_locked(self) -> None:
        """Tell the first live waiter it is the head (dropping any whose loop is gone)."""
        queue = self.queue
        while queue:
            w = queue[0]
            if w.state != _QUEUED:
                queue.popleft()
                continue
            w.head = True
            if w.wake():
                return
            queue.popleft()
            self._leave_locked(w)

    def _leave_locked(self, w: _Waiter) -> None:
        w.state = _GONE
        self.queued -= 1
        self.tat -= self.interval  # every later reservation moves one interval earlier

    def give_back(self) -> None:
        """An admitted call will not start after all (a breaker around rejected it): its permit returns.

        As when a waiter leaves the queue, the schedule moves one interval
        earlier. A head already sleeping toward its old time is not woken
        early: it is admitted when it wakes (the permit then helps the calls
        after it, or nobody; the limit is never exceeded).
        """
        with self.lock:
            self.tat -= self.interval

    # --- waiting -------------------------------------------------------------------

    def abandon(self, w: _Waiter) -> None:
        """The waiter was interrupted (cancelled, KeyboardInterrupt): give its reservation back."""
        with self.lock:
            if w.state != _QUEUED:  # admitted already: its permit is spent
                return
            self._leave_locked(w)
            if w.head:
                self.pass_head_locked()
            elif len(self.queue) > 2 * self.queued + 32:
                self.queue = deque(x for x in self.queue if x.state == _QUEUED)

    def _due_in(self) -> float:
        """Seconds until the head may run; when none, admit it (under the lock)."""
        lock = self.lock
        lock.acquire()
        try:
            now = self.clock.monotonic()
            left = self.head_due_locked() - now
            if left <= EPSILON:
                self.admit_head_locked(now)
                return 0.0
            return left
        finally:
            lock.release()

    async def wait_async(self, w: AsyncWaiter) -> None:
        """Wait until *w* (from :meth:`join_locked`) may run; it sleeps on the clock while it is the head."""
        try:
            if not w.head:
                await w.fut
            while (left := self._due_in()) > 0:
                await self.clock.sleep(left)
        except BaseException:
            self.abandon(w)
            raise

    def wait_sync(self, w: SyncWaiter) -> None:
        """Block until *w* (from :meth:`join_locked`) may run; it sleeps on the clock while it is the head."""
        try:
            if not w.head:
                w.gate.acquire()
            while (left := self._due_in()) > 0:
                blocking_sleep(self.clock, left)
        except BaseException:
            self.abandon(w)
            raise

    # --- reading -------------------------------------------------------------------

    def available(self) -> int:
        """Permits a call could take right now without waiting."""
        with self.lock:
            if self.queued:
                return 0
            now = self.clock.monotonic()
            ahead = self.tat - now if self.tat > now else 0.0
            return max(0, int((self.limit - ahead + EPSILON) // self.interval))
