"""The bus that delivers events (the event classes live in ``_event_types``).

Policies ask the bus whether anyone listens for a type before they build an
event, so a type nobody subscribed to costs one dictionary lookup and
allocates nothing.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, TypeAlias

from ._event_runs import AsyncRuns, Sub, report
from ._event_types import (
    BackendDegraded,
    BackendRecovered,
    BackendStateLost,
    BulkheadRejected,
    CallCancelled,
    CallFailed,
    CallRejected,
    CallStarted,
    CallSucceeded,
    ChaosInjected,
    CircuitClosed,
    CircuitHalfOpened,
    CircuitIsolated,
    CircuitOpened,
    CircuitRejected,
    CircuitStateChanged,
    ConfigReloaded,
    ConfigReloadFailed,
    Event,
    FallbackUsed,
    GateClosed,
    GateClosing,
    GateRejected,
    HedgeStarted,
    RateLimited,
    RetriesExhausted,
    RetryScheduled,
    TimeoutElapsed,
)
from ._introspect import is_async_callable
from ._numbers import describe, plain_number

__all__ = [
    "BackendDegraded",
    "BackendRecovered",
    "BackendStateLost",
    "BulkheadRejected",
    "CallCancelled",
    "CallFailed",
    "CallRejected",
    "CallStarted",
    "CallSucceeded",
    "ChaosInjected",
    "CircuitClosed",
    "CircuitHalfOpened",
    "CircuitIsolated",
    "CircuitOpened",
    "CircuitRejected",
    "CircuitStateChanged",
    "ConfigReloadFailed",
    "ConfigReloaded",
    "Event",
    "EventBus",
    "FallbackUsed",
    "GateClosed",
    "GateClosing",
    "GateRejected",
    "HedgeStarted",
    "Handler",
    "RateLimited",
    "RetriesExhausted",
    "RetryScheduled",
    "Subscription",
    "TimeoutElapsed",
    "capture_events",
    "default_bus",
    "subscribe",
]

EXPLICIT_ONLY: tuple[type[Event], ...] = (CallStarted, CallCancelled)
"""Events delivered only to subscriptions that name them (or a base other than ``Event``)."""
ALL_EVENTS: tuple[type[Event], ...] = (Event, *EXPLICIT_ONLY)
"""Subscribe to these to receive every event, the explicit-only ones included."""


# A sync handler's return value is ignored (unless it is awaitable), so any
# return type is accepted: `subscribe(lambda e: counter.inc())` type-checks.
Handler: TypeAlias = Callable[[Any], object] | Callable[[Any], Awaitable[object]]


# Bumped on every subscription change on any bus. Pipelines cache whether
# anyone listens to their events and re-check only when this moves, so a
# call with no listener pays one list read and one comparison.
subscriptions_version = [0]

# Interrupts (KeyboardInterrupt, or whatever a signal handler raises) land
# only where the interpreter checks for signals: as a function starts, as a
# call returns, on a loop's back edge; never between plain stores. So each
# change of the subscriptions is one locked section of plain stores (the
# version bumped inline, no call), and what can be interrupted around it is
# either done before it (building the Subscription, computing the new list)
# or undone/finished after it: an interrupted subscribe() registers nothing
# (its caller never gets the Subscription), an interrupted unsubscribe() or
# clear() finishes before the interrupt propagates (see tests/test_interrupts.py).


class Subscription:
    """A handler's registration on a bus.

    Call :meth:`unsubscribe`, or use the subscription as a context manager,
    to stop receiving events.
    """

    __slots__ = ("_bus", "_sub")

    def __init__(self, bus: EventBus, sub: Sub) -> None:
        self._bus = bus
        self._sub = sub

    @property
    def active(self) -> bool:
        """True while the handler still receives events."""
        return self._sub.active

    def unsubscribe(self) -> None:
        """Stop delivering events to the handler. Calling it again does nothing."""
        try:
            self._bus._remove(self._sub)
        except BaseException:
            self._bus._remove(self._sub)  # interrupted: finish (it is idempotent), then re-raise
            raise

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # unsubscribe()'s lines: an interrupt as it started would skip it.
        try:
            self._bus._remove(self._sub)
        except BaseException:
            self._bus._remove(self._sub)
            raise


class EventBus:
    """Delivers events to subscribed handlers.

    Sync handlers run inline, in subscription order, exactly once per event.
    Async handlers run as tasks the bus holds until they finish, on the
    event loop they were subscribed on (see ``docs/events.md``); at most
    *max_pending* runs are held at once, the excess is dropped and counted
    in :attr:`dropped`. :meth:`drain` waits for the runs of the loop it is
    awaited in. A handler that raises is logged on the ``resilient`` logger
    and changes nothing else.

    Args:
        max_pending: Async handler runs the bus may hold at once (accepted
            and not finished: queued, handed to a loop, or running), an
            int >= 1. Beyond it new runs are dropped.

    Raises:
        TypeError: *max_pending* is not an int.
        ValueError: *max_pending* is < 1.
    """

    def __init__(self, *, max_pending: int = 10_000) -> None:
        # A plain int: an int subclass's comparisons could lie (see _numbers).
        number = plain_number(max_pending)
        if number is None or type(number) is float:
            raise TypeError(f"max_pending must be an int, got {describe(max_pending)}")
        max_pending = int(number)
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self._subs: list[Sub] = []
        self._lock = threading.Lock()
        # type -> matching subscriptions, filled lazily, cleared on change.
        self._cache: dict[type, tuple[Sub, ...]] = {}
        self._runs = AsyncRuns(max_pending, self._lock)

    def subscribe(self, handler: Handler, *event_types: type[Event]) -> Subscription:
        """Register *handler* for *event_types* (all events when none given).

        An async handler's runs go to the event loop running here, if any
        (see ``docs/events.md``).

        Args:
            handler: A function or coroutine function taking one event.
            *event_types: Event classes; a class also matches its subclasses.

        Returns:
            The :class:`Subscription`.

        Raises:
            TypeError: *handler* is not callable or a type is not an Event class.
        """
        # (The module-level subscribe() repeats these lines: a helper's return value is lost to an interrupt.)
        subscription = self._subscription(handler, event_types)  # nothing registered yet
        try:
            self._add(subscription._sub)
        except BaseException:
            self._remove(subscription._sub)  # interrupted: the caller will not get it, so undo
            raise
        return subscription

    def _subscription(self, handler: Handler, event_types: tuple[type[Event], ...]) -> Subscription:
        """Check the arguments and build the subscription, registering nothing."""
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {describe(handler)}")
        for t in event_types:
            if not (isinstance(t, type) and issubclass(t, Event)):
                raise TypeError(f"event_types must be Event subclasses, got {describe(t)}")
        return Subscription(self, Sub(handler, event_types or (Event,), is_async_callable(handler)))

    def _add(self, sub: Sub) -> None:
        with self._lock:
            # Plain stores only: no interrupt lands in between.
            self._subs = [*self._subs, sub]
            self._cache = {}
            subscriptions_version[0] += 1

    def _remove(self, sub: Sub) -> None:
        """Unregister *sub* and forget its runs not started (idempotent: run it again to finish it)."""
        with self._lock:
            subs = self._subs
            if sub in subs:
                kept = [s for s in subs if s is not sub]  # (interrupted here, nothing changed)
                self._subs = kept
                self._cache = {}
                subscriptions_version[0] += 1
            sub.active = False
        self._runs.forget({sub})

    def _listeners(self, cls: type) -> tuple[Sub, ...]:
        cache = self._cache
        try:
            return cache[cls]
        except KeyError:
            if issubclass(cls, EXPLICIT_ONLY):
                # Call-lifecycle events that API.md's event list does not name
                # reach only handlers that name them: a catch-all subscription
                # (``Event``) sees the same stream as before they existed.
                found = tuple(
                    s for s in self._subs if any(issubclass(cls, t) and t is not Event for t in s.types)
                )
            else:
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

        Never raises an :class:`Exception`: a handler failing, even when it
        is called (an async handler of the wrong arity), is logged on the
        ``resilient`` logger. A control-flow exception a sync handler raises
        (``KeyboardInterrupt``, ``SystemExit``...) propagates, and the
        handlers after it do not run.

        Args:
            event: The event.
        """
        for sub in self._listeners(type(event)):
            try:
                if sub.is_async:
                    self._runs.deliver(sub, event)
                    continue
                result = sub.handler(event)
                if result is not None and inspect.isawaitable(result):
                    self._runs.adopt(result, sub)
            except Exception:
                report(sub, event)

    @property
    def max_pending(self) -> int:
        """Async handler runs the bus holds at most (beyond it, new runs are dropped)."""
        return self._runs.max_pending

    @property
    def pending(self) -> int:
        """Async handler runs accepted and not finished: queued, handed to a loop, or running."""
        return self._runs.pending

    @property
    def dropped(self) -> int:
        """Async handler runs dropped so far: over :attr:`max_pending`, or their event loop was closed."""
        return self._runs.dropped

    async def drain(self) -> None:
        """Wait until the async handler runs of the running loop have finished.

        It starts the runs handed to this loop and the events that were
        emitted where no loop ran (for handlers subscribed outside a loop),
        then waits for this loop's runs, including ones they start. Runs that
        belong to another event loop are not waited for (drain that loop);
        :attr:`pending` still counts them.
        """
        await self._runs.drain()

    def clear(self) -> None:
        """Remove every subscription; runs not started yet are forgotten, running ones finish."""
        subs: list[Sub] = []
        try:
            with self._lock:
                subs = self._subs
                self._subs = []
                self._cache = {}
                subscriptions_version[0] += 1
            self._retire(subs)
        except BaseException:
            self._retire(subs)  # idempotent: finish, then re-raise
            raise

    def _retire(self, subs: list[Sub]) -> None:
        for sub in subs:
            sub.active = False
        if subs:
            self._runs.forget(set(subs))

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

    Raises:
        TypeError: *bus* is not an EventBus (or *handler*, *event_types* are wrong).
    """
    # EventBus.subscribe's lines, not a call to it: an interrupt as it returned here would lose the
    # Subscription of a registered handler.
    target = _target(bus)
    subscription = target._subscription(handler, event_types)
    try:
        target._add(subscription._sub)
    except BaseException:
        target._remove(subscription._sub)
        raise
    return subscription


def _target(bus: EventBus | None) -> EventBus:
    """The bus *bus* names (None: the default one), checked."""
    if bus is not None and not isinstance(bus, EventBus):
        raise TypeError(f"bus must be an EventBus or None, got {describe(bus)}")
    return default_bus if bus is None else bus


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
    target = _target(bus)
    subscription = target._subscription(events.append, event_types)
    try:
        target._add(subscription._sub)
        yield events
    finally:
        try:
            target._remove(subscription._sub)
        except BaseException:
            target._remove(subscription._sub)  # interrupted: finish (it is idempotent), then re-raise
            raise
