"""``bulkhead``: cap how many calls run at once, with a bounded FIFO queue.

The slots, the queue and every step that changes them live in
:mod:`resilient._bulkhead_slots` (how they survive an interrupt is explained
there); this module is the policy: configuration, the pipeline layers (which
inline the uncontended path: a lock round trip and a counter check), and the
context managers.

A call that had to wait in the queue tells the layers around it before it
runs (see :mod:`resilient._waits`): a circuit breaker outside the bulkhead
rejects it if it opened meanwhile, and leaves the wait out of its slow-call
timing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, ClassVar

from ._bulkhead_slots import _GRANTED, _NEW, _QUEUED, Slots, _AsyncWaiter, _SyncWaiter, running_loop_getter
from ._clock import Clock
from ._context import CallContext, _deadline
from ._events import BulkheadRejected, Event, EventBus
from ._pipeline import Args, AsyncLayer, Kwargs, Policy, SyncLayer
from ._tracking import track
from ._validate import check_bus, check_clock, check_duration, check_int, check_name
from ._waits import WaitReporter

__all__ = ["Bulkhead", "bulkhead"]

_FAST: Any = object()  # "took a free slot at once", in the layers' ``w``


class Bulkhead(Slots, Policy):
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
        self._init_slots()
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

    # --- policy layers ---------------------------------------------------------
    # The uncontended path is inlined in each layer: a free slot costs a lock
    # round trip and a counter check. `w` says what the call holds: None
    # (nothing yet), _FAST (a slot taken at once) or a waiter (a slot if its
    # state is _GRANTED), so the finally clause frees exactly what was taken
    # wherever an interrupt lands. The lock is taken with acquire()/release()
    # rather than `with` (which costs ~50 ns more per section): an except
    # clause, free unless something is raised, lets it go if an interrupt
    # lands while it is held, and _finish_give_back completes a release that
    # an interrupt stopped (see _bulkhead_slots).

    def wrap_async(self, inner: AsyncLayer) -> AsyncLayer:
        """Return the async layer that runs *inner* holding a slot."""
        # Few closure variables: each one costs a copy per call.
        acquire = self._lock.acquire
        release = self._lock.release
        limit = self._max
        max_queue = self._max_queue
        no_timeout = self.queue_timeout is None
        get_loop = running_loop_getter()
        waiter = _AsyncWaiter
        me = self
        reporter = WaitReporter()  # tells the layers around of a call's wait

        async def run(ctx: CallContext, fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
            w: Any = None
            try:
                try:
                    acquire()
                    if me._in_use < limit:
                        me._in_use += 1
                        w = _FAST
                        release()
                    else:
                        # The queued path, inlined too: it is the hot path of a busy bulkhead.
                        w = _AsyncWaiter()
                        if no_timeout and me._queued < max_queue and _deadline.get() is None:
                            # _join_locked's usual case, inlined: no bound on the wait.
                            if reporter.needs_time:
                                w.joined = me.clock.monotonic()
                            w.state = _QUEUED
                            me._queued += 1
                            me._queue.append(w)
                        else:
                            me._join_locked(w, reporter.needs_time)
                        release()
                        state = w.state
                        if state == _QUEUED:
                            if w.bound is not None:
                                me._arm(w)
                            await w.fut
                            # Woken by a hand-over, the state is final (set under the
                            # lock before the wake-up): no lock needed to read it.
                            if (w.handle is not None or w.state != _GRANTED) and not me._settle(w):
                                raise me._reject(ctx.operation, w.bound)
                            if reporter.listening:
                                gate = reporter.gate
                                if gate is None or not gate.waiters_admitted:
                                    waited = me.clock.monotonic() - w.joined if reporter.needs_time else 0.0
                                    pending = reporter.report(waited, ctx.operation)
                                    if pending is not None:
                                        await pending
                        elif state == _NEW:
                            raise me._reject(ctx.operation, None)
                        # (else GRANTED at once: a slot freed since the check above)
                        w = _FAST  # it holds a slot: the finally clause frees it
                except BaseException:
                    if me._owned():
                        release()
                    if w is not None and w is not _FAST:
                        try:
                            me._abandon(w)  # its place in the queue, or the slot it was handed
                        except BaseException:
                            me._abandon(w)  # interrupted: finish (it is idempotent), then re-raise
                            raise
                    raise
                return await inner(ctx, fn, args, kwargs)
            finally:
                if w is _FAST or (w is not None and w.state == _GRANTED):
                    try:
                        acquire()
                        me._in_use -= 1
                        w = None  # freed (no signal check between these two stores)
                        if me._queued:
                            # The hand-over's usual case, inlined: the first waiter
                            # is live and waits on this loop. Restartable as
                            # _pass_on_locked is (it stays first until woken).
                            queue = me._queue
                            nxt: Any = queue[0]
                            if nxt.state == _QUEUED and nxt.__class__ is waiter and nxt.loop is get_loop():
                                nxt.state = _GRANTED
                                me._queued -= 1
                                me._in_use += 1
                                nxt.woken = True
                                fut = nxt.fut
                                if not fut.done():
                                    fut.set_result(None)
                                queue.popleft()
                            else:
                                me._pass_on_locked()
                        release()
                    except BaseException:
                        me._finish_give_back(w is None)
                        raise

        return run

    def wrap_sync(self, inner: SyncLayer) -> SyncLayer:
        """Return the sync layer that runs *inner* holding a slot (thread-safe)."""
        # Few closure variables: each one costs a copy per call.
        acquire = self._lock.acquire
        release = self._lock.release
        limit = self._max
        me = self
        reporter = WaitReporter()  # tells the layers around of a call's wait

        def run(ctx: CallContext, fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
            w: Any = None
            try:
                try:
                    acquire()
                    if me._in_use < limit:
                        me._in_use += 1
                        w = _FAST
                        release()
                    else:
                        release()
                        w = _SyncWaiter()
                        me._wait_sync(w, ctx.operation, reporter)
                except BaseException:
                    if me._owned():
                        release()
                    raise
                return inner(ctx, fn, args, kwargs)
            finally:
                if w is _FAST or (w is not None and w.state == _GRANTED):
                    try:
                        acquire()
                        me._in_use -= 1
                        w = None  # freed (no signal check between these two stores)
                        if me._queued:
                            me._pass_on_locked()
                        release()
                    except BaseException:
                        me._finish_give_back(w is None)
                        raise

        return run

    # --- context managers ------------------------------------------------------
    # An entry holds no state of its own (slots are anonymous), so unlike
    # timeout these need no per-entry scope, which would cost ~0.6 µs.

    async def __aenter__(self) -> Bulkhead:
        """Take a slot for the block, waiting in the queue if allowed (else BulkheadFullError)."""
        lock = self._lock
        w: Any = None
        try:
            try:
                lock.acquire()
                if self._in_use < self._max:
                    self._in_use += 1
                    w = _FAST
                lock.release()
            except BaseException:
                if self._owned():
                    lock.release()
                raise
            if w is None:
                w = _AsyncWaiter()
                await self._wait_async(w)
        except BaseException:
            # Interrupted once the slot was taken: the block will not run to give it back.
            if w is _FAST or (w is not None and w.state == _GRANTED):
                self._give_back()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Give the slot back (to the first waiter, if any)."""
        # The release is inlined here and in __exit__: an interrupt as a helper
        # starts would keep the slot. One landing as __aexit__ itself starts
        # cannot be guarded against.
        lock = self._lock
        freed = False
        try:
            lock.acquire()
            if self._in_use > 0:
                self._in_use -= 1
                freed = True
                if self._queued:
                    self._pass_on_locked()
            lock.release()
        except BaseException:
            self._finish_give_back(freed)
            raise
        if not freed:
            raise RuntimeError(f"{self!r} released more often than it was entered")

    def __enter__(self) -> Bulkhead:
        """Take a slot for the block, blocking in the queue if allowed (else BulkheadFullError)."""
        lock = self._lock
        w: Any = None
        try:
            try:
                lock.acquire()
                if self._in_use < self._max:
                    self._in_use += 1
                    w = _FAST
                lock.release()
            except BaseException:
                if self._owned():
                    lock.release()
                raise
            if w is None:
                w = _SyncWaiter()
                self._wait_sync(w, None, None)
        except BaseException:
            if w is _FAST or (w is not None and w.state == _GRANTED):
                self._give_back()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Give the slot back (to the first waiter, if any)."""
        lock = self._lock
        freed = False
        try:
            lock.acquire()
            if self._in_use > 0:
                self._in_use -= 1
                freed = True
                if self._queued:
                    self._pass_on_locked()
            lock.release()
        except BaseException:
            self._finish_give_back(freed)
            raise
        if not freed:
            raise RuntimeError(f"{self!r} released more often than it was entered")


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
