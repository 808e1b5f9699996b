"""The bus that delivers events (the event classes live in ``_event_types``).

Policies ask the bus whether anyone listens for a type before they build an
event, so a type nobody subscribed to costs one dictionary lookup and
allocates nothing.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, TypeAlias

from ._event_types import (
    BackendDegraded,
    BackendRecovered,
    BackendStateLost,
    BulkheadRejected,
    CallFailed,
    CallRejected,
    CallSucceeded,
    CircuitClosed,
    CircuitHalfOpened,
    CircuitIsolated,
    CircuitOpened,
    CircuitRejected,
    CircuitStateChanged,
    Event,
    FallbackUsed,
    RetriesExhausted,
    RetryScheduled,
    TimeoutElapsed,
)
from ._introspect import is_async_callable

__all__ = [
    "BackendDegraded",
    "BackendRecovered",
    "BackendStateLost",
    "BulkheadRejected",
    "CallFailed",
    "CallRejected",
    "CallSucceeded",
    "CircuitClosed",
    "CircuitHalfOpened",
    "CircuitIsolated",
    "CircuitOpened",
    "CircuitRejected",
    "CircuitStateChanged",
    "Event",
    "EventBus",
    "FallbackUsed",
    "Handler",
    "RetriesExhausted",
    "RetryScheduled",
    "Subscription",
    "TimeoutElapsed",
    "capture_events",
    "default_bus",
    "subscribe",
]

logger = logging.getLogger("resilient")


# A sync handler's return value is ignored (unless it is awaitable), so any
# return type is accepted: `subscribe(lambda e: counter.inc())` type-checks.
Handler: TypeAlias = Callable[[Any], object] | Callable[[Any], Awaitable[object]]


# Bumped on every subscription change on any bus. Pipelines cache whether
# anyone listens to their events and re-check only when this moves, so a
# call with no listener pays one list read and one comparison.
subscriptions_version = [0]


def _changed() -> None:
    subscriptions_version[0] += 1


class _Sub:
    __slots__ = ("handler", "is_async", "types")

    def __init__(self, handler: Handler, types: tuple[type[Event], ...]) -> None:
        self.handler = handler
        self.types = types
        self.is_async = is_async_callable(handler)


class Subscription:
    """A handler's registration on a bus.

    Call :meth:`unsubscribe`, or use the subscription as a context manager,
    to stop receiving events.
    """

    __slots__ = ("_bus", "_sub")

    def __init__(self, bus: EventBus, sub: _Sub) -> None:
        self._bus = bus
        self._sub = sub

    @property
    def active(self) -> bool:
        """True while the handler still receives events."""
        return self._sub in self._bus._subs

    def unsubscribe(self) -> None:
        """Stop delivering events to the handler. Calling it again does nothing."""
        self._bus._remove(self._sub)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.unsubscribe()


class EventBus:
    """Delivers events to subscribed handlers.

    Sync handlers run inline, in subscription order, exactly once per event.
    Async handlers run as tasks the bus holds until they finish;
    :meth:`drain` waits for them. A handler that raises is logged on the
    ``resilient`` logger and changes nothing else.
    """

    def __init__(self) -> None:
        self._subs: list[_Sub] = []
        self._lock = threading.Lock()
        # type -> matching subscriptions, filled lazily, cleared on change.
        self._cache: dict[type, tuple[_Sub, ...]] = {}
        self._tasks: set[asyncio.Future[Any]] = set()
        # Async deliveries that found no running loop; drain() runs them.
        self._pending: list[tuple[_Sub, Event]] = []

    def subscribe(self, handler: Handler, *event_types: type[Event]) -> Subscription:
        """Register *handler* for *event_types* (all events when none given).

        Args:
            handler: A function or coroutine function taking one event.
            *event_types: Event classes; a class also matches its subclasses.

        Returns:
            The :class:`Subscription`.

        Raises:
            TypeError: *handler* is not callable or a type is not an Event class.
        """
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {handler!r}")
        for t in event_types:
            if not (isinstance(t, type) and issubclass(t, Event)):
                raise TypeError(f"event_types must be Event subclasses, got {t!r}")
        sub = _Sub(handler, event_types or (Event,))
        with self._lock:
            self._subs = [*self._subs, sub]
            self._cache = {}
            _changed()
        return Subscription(self, sub)

    def _remove(self, sub: _Sub) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs = [s for s in self._subs if s is not sub]
                self._cache = {}
                _changed()

    def _listeners(self, cls: type) -> tuple[_Sub, ...]:
        cache = self._cache
        try:
            return cache[cls]
        except KeyError:
            found = tuple(s for s in self._subs if issubclass(cls, s.types))
            cache[cls] = found
            return found

    def wants(self, cls: type[Event]) -> bool:
        """Return True if any handler listens for events of *cls*.

        Policies call this before building an event, so an event type with no
        subscriber is never allocated.

        Args:
            cls: An event class.

        Returns:
            Whether emitting an event of *cls* would reach a handler.
        """
        try:
            return bool(self._cache[cls])
        except KeyError:
            return bool(self._listeners(cls))

    def emit(self, event: Event) -> None:
        """Deliver *event* to every handler subscribed to its type.

        Args:
            event: The event.
        """
        for sub in self._listeners(type(event)):
            if sub.is_async:
                self._schedule(sub, event)
                continue
            try:
                result = sub.handler(event)
            except Exception:
                logger.exception("resilient event handler %r failed on %r", sub.handler, event)
                continue
            if result is not None and inspect.isawaitable(result):
                self._track(result, sub)

    def _schedule(self, sub: _Sub, event: Event) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            with self._lock:
                self._pending.append((sub, event))
            return
        self._track(sub.handler(event), sub)  # type: ignore[arg-type]

    def _track(self, awaitable: Awaitable[Any], sub: _Sub) -> None:
        try:
            fut = asyncio.ensure_future(awaitable)
        except RuntimeError:
            # No running loop for an awaitable a sync handler returned.
            close = getattr(awaitable, "close", None)
            if close is not None:
                close()
            logger.error("resilient event handler %r returned an awaitable outside a loop", sub.handler)
            return
        self._tasks.add(fut)
        fut.add_done_callback(self._done)

    def _done(self, fut: asyncio.Future[Any]) -> None:
        # Runs once per run: from the done callback or from drain(),
        # whichever comes first (drain must not wait on the loop for it).
        if fut not in self._tasks:
            return
        self._tasks.discard(fut)
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            logger.error("resilient async event handler failed", exc_info=exc)

    @property
    def pending(self) -> int:
        """Async handler runs not finished yet (including ones not started)."""
        return len(self._tasks) + len(self._pending)

    async def drain(self) -> None:
        """Wait until every async handler run started so far has finished.

        Deliveries made where no event loop was running are started here.
        """
        while True:
            with self._lock:
                pending, self._pending = self._pending, []
            for sub, event in pending:
                self._track(sub.handler(event), sub)  # type: ignore[arg-type]
            running = [t for t in self._tasks if not t.done()]
            if running:
                await asyncio.wait(running)
            # Settle finished runs here rather than relying on their done
            # callbacks: awaiting only finished futures may not yield to the
            # loop (Python 3.12+), so the callbacks might never get to run.
            for t in [t for t in self._tasks if t.done()]:
                self._done(t)
            if not self._tasks and not self._pending:
                return

    def clear(self) -> None:
        """Remove every subscription (tracked tasks keep running)."""
        with self._lock:
            self._subs = []
            self._cache = {}
            _changed()

    def __repr__(self) -> str:
        return f"<EventBus subscriptions={len(self._subs)}>"


default_bus = EventBus()
"""The bus every policy emits to unless given ``bus=``."""


def subscribe(handler: Handler, *event_types: type[Event], bus: EventBus | None = None) -> Subscription:
    """Subscribe *handler* to *event_types* on *bus* (default: ``default_bus``).

    Args:
        handler: A function or coroutine function taking one event.
        *event_types: Event classes; none means every event.
        bus: The bus; ``None`` means :data:`default_bus`.

    Returns:
        A :class:`Subscription`; ``unsubscribe()`` it or use it in ``with``.
    """
    return (default_bus if bus is None else bus).subscribe(handler, *event_types)


@contextmanager
def capture_events(*event_types: type[Event], bus: EventBus | None = None) -> Iterator[list[Event]]:
    """Record the events emitted while the block runs.

    Args:
        *event_types: Only these classes (and subclasses); none means all.
        bus: The bus to listen on (default: ``default_bus``).

    Yields:
        The list the events are appended to, in emission order.
    """
    events: list[Event] = []
    with (default_bus if bus is None else bus).subscribe(events.append, *event_types):
        yield events
