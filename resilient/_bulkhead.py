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

import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any, ClassVar

from ._bulkhead_slots import _GRANTED, Slots, _AsyncWaiter, _SyncWaiter
from ._clock import Clock
from ._context import CallContext
from ._events import BulkheadRejected, Event, EventBus
from ._pipeline import Args, AsyncLayer, Kwargs, Policy, SyncLayer
from ._validate import check_bus, check_clock, check_duration, check_int, check_name

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
    # The uncontended path is inlined in each layer: a free slot must cost no
    # more than a lock round trip and a counter check. `w` says what the call
    # holds: None (nothing yet), _FAST (a slot taken at once) or a waiter
    # (a slot if its state is _GRANTED), so the finally clause frees exactly
    # what was taken wherever an interrupt lands.

    def wrap_async(self, inner: AsyncLayer) -> AsyncLayer:
        """Return the async layer that runs *inner* holding a slot."""
        lock = self._lock
        limit = self._max
        wait = self._wait_async
        pass_on = self._pass_on_locked
        fast = _FAST
        me = self

        async def run(ctx: CallContext, fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
            w: Any = None
            try:
                with lock:
                    if me._in_use < limit:
                        me._in_use += 1
                        w = fast
                if w is None:
                    w = _AsyncWaiter()
                    await wait(w, ctx.operation, sys._getframe())
                return await inner(ctx, fn, args, kwargs)
            finally:
                if w is fast or (w is not None and w.state == _GRANTED):
                    with lock:
                        me._in_use -= 1
                        if me._queued:
                            try:
                                pass_on()
                            except BaseException:
                                pass_on()  # interrupted: finish the hand-over, then re-raise
                                raise

        return run

    def wrap_sync(self, inner: SyncLayer) -> SyncLayer:
        """Return the sync layer that runs *inner* holding a slot (thread-safe)."""
        lock = self._lock
        limit = self._max
        wait = self._wait_sync
        pass_on = self._pass_on_locked
        fast = _FAST
        me = self

        def run(ctx: CallContext, fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
            w: Any = None
            try:
                with lock:
                    if me._in_use < limit:
                        me._in_use += 1
                        w = fast
                if w is None:
                    w = _SyncWaiter()
                    wait(w, ctx.operation, sys._getframe())
                return inner(ctx, fn, args, kwargs)
            finally:
                if w is fast or (w is not None and w.state == _GRANTED):
                    with lock:
                        me._in_use -= 1
                        if me._queued:
                            try:
                                pass_on()
                            except BaseException:
                                pass_on()  # interrupted: finish the hand-over, then re-raise
                                raise

        return run

    # --- context managers ------------------------------------------------------
    # An entry holds no state of its own (slots are anonymous), so unlike
    # timeout these need no per-entry scope, which would cost ~0.6 µs.

    async def __aenter__(self) -> Bulkhead:
        """Take a slot for the block, waiting in the queue if allowed (else BulkheadFullError)."""
        w: Any = None
        try:
            with self._lock:
                if self._in_use < self._max:
                    self._in_use += 1
                    w = _FAST
            if w is None:
                w = _AsyncWaiter()
                await self._wait_async(w, None, None)
        except BaseException:
            # Interrupted after the slot was taken (as the lock was let go, say): the block will not run.
            if w is _FAST or (w is not None and w.state == _GRANTED):
                self._give_back()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Give the slot back (to the first waiter, if any)."""
        # Inlined: an interrupt as a helper starts would keep the slot. (One
        # landing as __aexit__ itself starts cannot be guarded against.)
        with self._lock:
            if self._in_use <= 0:
                raise RuntimeError(f"{self!r} released more often than it was entered")
            self._in_use -= 1
            if self._queued:
                try:
                    self._pass_on_locked()
                except BaseException:
                    self._pass_on_locked()
                    raise

    def __enter__(self) -> Bulkhead:
        """Take a slot for the block, blocking in the queue if allowed (else BulkheadFullError)."""
        w: Any = None
        try:
            with self._lock:
                if self._in_use < self._max:
                    self._in_use += 1
                    w = _FAST
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
        with self._lock:
            if self._in_use <= 0:
                raise RuntimeError(f"{self!r} released more often than it was entered")
            self._in_use -= 1
            if self._queued:
                try:
                    self._pass_on_locked()
                except BaseException:
                    self._pass_on_locked()
                    raise


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
