"""Log every event on a stdlib :mod:`logging` logger.

Each event kind has a level (configurable per event class) and a readable
message; the event's fields go into the record as flat ``resilient_*``
attributes for structured formatters::

    from resilient.adapters.logging import LoggingAdapter

    LoggingAdapter().attach()  # logs on the "resilient" logger

The message is only built when the logger is enabled for the event's level,
so a quiet production logger pays one level check per event.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from resilient._context import current_call
from resilient._events import (
    ALL_EVENTS,
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
    CircuitRejected,
    CircuitStateChanged,
    ConfigReloadFailed,
    Event,
    EventBus,
    FallbackUsed,
    HedgeStarted,
    RateLimited,
    RetriesExhausted,
    RetryScheduled,
    Subscription,
    TimeoutElapsed,
)
from resilient._numbers import describe as _describe
from resilient._state import CircuitState

from ._common import attach, call_attributes, event_fields, event_kind, short_repr, subject
from ._levels import Severity, check_levels, check_severity, cover, level_for, pick_level

__all__ = ["DEFAULT_LEVELS", "PER_CALL", "LoggingAdapter", "exc_info_of", "record_extra", "render"]

DEFAULT_LEVELS: Mapping[type[Event], int] = {
    Event: logging.INFO,
    RetryScheduled: logging.WARNING,
    RetriesExhausted: logging.WARNING,
    TimeoutElapsed: logging.WARNING,
    CircuitStateChanged: logging.WARNING,
    CallRejected: logging.WARNING,
    FallbackUsed: logging.WARNING,
    HedgeStarted: logging.INFO,
    ChaosInjected: logging.WARNING,
    BackendDegraded: logging.WARNING,
    BackendRecovered: logging.INFO,
    BackendStateLost: logging.WARNING,
    CallStarted: logging.DEBUG,
    CallSucceeded: logging.DEBUG,
    CallFailed: logging.INFO,
    CallCancelled: logging.INFO,
    ConfigReloadFailed: logging.ERROR,
}
"""The default level of each event kind; subclasses inherit their base's level.

A rejected configuration reload is ERROR. Retries, timeouts, circuit state
changes, rejections, fallbacks, chaos injections (an injected fault in the
logs must say so), a degraded backend and a backend that lost its state are
WARNING; a failed call (the caller gets the exception and decides), a
cancelled call, a hedged attempt and a recovered backend are INFO; a call's
start and its success are DEBUG so production logs stay quiet.
"""

PER_CALL: tuple[type[Event], ...] = (CallStarted, CallSucceeded)
"""The kinds every successful call emits: left unsubscribed while they would be dropped."""


def exc_info_of(event: Event) -> BaseException | None:
    """Return the exception whose traceback belongs in *event*'s log entry, or None.

    Failed calls and retry giving up carry the exception (the log shows its
    traceback); other events name it in the message only.

    Args:
        event: Any event.

    Returns:
        ``CallFailed.exception`` or ``RetriesExhausted.exception``, else None.
    """
    if isinstance(event, (CallFailed, RetriesExhausted)):
        return event.exception
    return None


_REASONS = {
    "attempts": "no attempts left",
    "deadline": "the next wait would pass the deadline",
    "retry_after": "the error's retry_after exceeds the backoff's max_delay",
    "budget": "the retry budget is spent",
}

_VERBS = {
    CircuitState.OPEN: "opened",
    CircuitState.HALF_OPEN: "half-opened",
    CircuitState.CLOSED: "closed",
    CircuitState.ISOLATED: "isolated",
}


def _label(event: Event) -> str:
    return repr(event.name) if event.name is not None else "(unnamed)"


def _cause(exc: BaseException | None, result: Any = None, retried_result: bool = False) -> str:
    if exc is not None:
        return repr(exc)
    if retried_result:
        return f"result {short_repr(result)}"
    return "a retried result"


def _total_attempts(event: RetryScheduled) -> int | None:
    """The emitting retry's ``attempts`` setting, when it can be told apart in the running pipeline."""
    ctx = current_call()
    if ctx is None or ctx.operation != event.operation:
        return None
    found: Any = None
    for policy in ctx.pipeline.policies:
        if policy.kind == "retry" and policy.name == event.name:
            if found is not None:
                return None  # two unnamed retries: we cannot tell which one emitted
            found = policy
    total = getattr(found, "attempts", None)
    return total if isinstance(total, int) else None


def _retry_scheduled(ev: RetryScheduled) -> str:
    total = _total_attempts(ev)
    nxt = ev.attempt + 1
    attempt = f"{nxt}/{total}" if total is not None else str(nxt)
    cause = _cause(ev.exception, ev.result, retried_result=True)
    return f"retrying {subject(ev)} in {ev.delay:.2f}s (attempt {attempt}) after {cause}"


def _retries_exhausted(ev: RetriesExhausted) -> str:
    plural = "attempt" if ev.attempts == 1 else "attempts"
    why = _REASONS.get(ev.reason, ev.reason)
    return f"giving up on {subject(ev)} after {ev.attempts} {plural} ({why}): {_cause(ev.exception)}"


def _timeout_elapsed(ev: TimeoutElapsed) -> str:
    return f"{subject(ev)} timed out after {ev.seconds:g}s"


def _circuit_changed(ev: CircuitStateChanged) -> str:
    verb = _VERBS.get(ev.state, f"moved to {ev.state.value}")
    during = f" during {ev.operation}" if ev.operation is not None else ""
    return f"circuit breaker {_label(ev)} {verb} (was {ev.previous.value}){during}"


def _circuit_rejected(ev: CircuitRejected) -> str:
    after = f", retry after {ev.retry_after:.2f}s" if ev.retry_after is not None else ""
    return f"circuit breaker {_label(ev)} rejected {subject(ev)}{after}"


def _bulkhead_rejected(ev: BulkheadRejected) -> str:
    return f"bulkhead {_label(ev)} rejected {subject(ev)}: no free slot"


def _rate_limited(ev: RateLimited) -> str:
    after = f", retry after {ev.retry_after:.2f}s" if ev.retry_after is not None else ""
    return f"rate limiter {_label(ev)} rejected {subject(ev)}{after}"


def _call_rejected(ev: CallRejected) -> str:
    return f"{ev.policy} {_label(ev)} rejected {subject(ev)}"


def _fallback_used(ev: FallbackUsed) -> str:
    return f"fallback used for {subject(ev)} after {ev.exception!r}"


_HEDGE_REASONS = {"delay": "no answer within the delay", "failure": "an attempt failed"}


def _hedge_started(ev: HedgeStarted) -> str:
    why = _HEDGE_REASONS.get(ev.reason, ev.reason)
    return f"hedge {_label(ev)} started attempt {ev.attempt} of {subject(ev)}: {why}"


def _chaos_injected(ev: ChaosInjected) -> str:
    head = f"chaos {_label(ev)} injected"
    if ev.kind == "fault":
        return f"{head} a fault into {subject(ev)}: {ev.exception!r}"
    if ev.kind == "latency" and ev.seconds is not None:
        return f"{head} a latency of {ev.seconds:g}s into {subject(ev)}"
    if ev.kind == "result":
        return f"{head} a result into {subject(ev)}"
    return f"{head} {ev.kind} into {subject(ev)}"


def _call_started(ev: CallStarted) -> str:
    return f"{subject(ev)} started"


def _call_cancelled(ev: CallCancelled) -> str:
    return f"{subject(ev)} cancelled after {ev.duration:.3f}s ({type(ev.exception).__name__})"


def _call_succeeded(ev: CallSucceeded) -> str:
    return f"{subject(ev)} succeeded in {ev.duration:.3f}s"


def _call_failed(ev: CallFailed) -> str:
    return f"{subject(ev)} failed after {ev.duration:.3f}s: {ev.exception!r}"


def _backend_degraded(ev: BackendDegraded) -> str:
    cause = f" ({ev.exception!r})" if ev.exception is not None else ""
    return f"{ev.policy} {_label(ev)}: backend {ev.backend} is not answering, using local state{cause}"


def _backend_recovered(ev: BackendRecovered) -> str:
    return f"{ev.policy} {_label(ev)}: backend {ev.backend} answers again, using shared state"


def _backend_state_lost(ev: BackendStateLost) -> str:
    return (
        f"{ev.policy} {_label(ev)}: backend {ev.backend} lost the shared state "
        f"(was {ev.previous.value}, now {ev.state.value})"
    )


def _generic(ev: Event) -> str:
    fields = ", ".join(f"{k}={v!r}" for k, v in event_fields(ev).items())
    return f"{event_kind(type(ev))} {subject(ev)}" + (f" ({fields})" if fields else "")


_RENDERERS: dict[type, Callable[[Any], str]] = {
    RetryScheduled: _retry_scheduled,
    RetriesExhausted: _retries_exhausted,
    TimeoutElapsed: _timeout_elapsed,
    CircuitStateChanged: _circuit_changed,
    CircuitRejected: _circuit_rejected,
    BulkheadRejected: _bulkhead_rejected,
    RateLimited: _rate_limited,
    CallRejected: _call_rejected,
    FallbackUsed: _fallback_used,
    HedgeStarted: _hedge_started,
    ChaosInjected: _chaos_injected,
    CallStarted: _call_started,
    CallSucceeded: _call_succeeded,
    CallFailed: _call_failed,
    CallCancelled: _call_cancelled,
    BackendDegraded: _backend_degraded,
    BackendRecovered: _backend_recovered,
    BackendStateLost: _backend_state_lost,
    Event: _generic,
}


def render(event: Event) -> str:
    """Return the log message for *event* (the one :class:`LoggingAdapter` writes).

    Args:
        event: Any event.

    Returns:
        E.g. ``"retrying fetch_user in 0.21s (attempt 2/3) after ConnectionError('refused')"``.
    """
    for base in type(event).__mro__:
        renderer = _RENDERERS.get(base)
        if renderer is not None:
            return renderer(event)
    return _generic(event)


def record_extra(event: Event) -> dict[str, Any]:
    """Return the flat ``resilient_*`` fields :class:`LoggingAdapter` puts on a record.

    Args:
        event: Any event.

    Returns:
        ``resilient_event`` (the kind, e.g. ``"retry_scheduled"``),
        ``resilient_policy``, ``resilient_name``, ``resilient_operation``,
        then ``resilient_<field>`` for each of the event's own fields.
    """
    extra: dict[str, Any] = {
        "resilient_event": event_kind(type(event)),
        "resilient_policy": event.policy,
        "resilient_name": event.name,
        "resilient_operation": event.operation,
    }
    for key, value in event_fields(event).items():
        extra[f"resilient_{key}"] = value
    return extra


class LoggingAdapter:
    """Writes events to a stdlib logger.

    Args:
        logger: A :class:`logging.Logger` (or ``LoggerAdapter``), a logger
            name, or None for the ``"resilient"`` logger.
        levels: Event class -> level (int or name such as ``"INFO"``),
            merged over :data:`DEFAULT_LEVELS`. A class also sets the level
            of its subclasses unless they have their own entry, so
            ``{CallRejected: "ERROR"}`` covers circuit and bulkhead
            rejections.
        skip_disabled: If True (the default), the per-call kinds
            (``CallStarted``, ``CallSucceeded``: DEBUG by default) that the
            logger would drop when :meth:`attach` runs are not subscribed at
            all, so a successful call never builds them. Call
            :meth:`refresh` after lowering the logger's level at run time to
            start logging them. Every other kind (they happen off the success
            path) is always subscribed and checked against the logger's level
            when it arrives. If False, every kind is treated alike.
        severity: ``(event) -> level | None``, called for each event: the
            level of this one event (an int or a name), or None for the one
            *levels* gives. Use it to decide by content, e.g. a retry after
            a timeout is INFO but after a refused connection WARNING. With a
            callable, every kind is subscribed (it may raise a success's
            level); one that raises or answers junk is logged and the
            configured level is used.

    Raises:
        TypeError: *logger*, a *levels* entry or *severity* has the wrong type.
        ValueError: A level name is unknown.
    """

    def __init__(
        self,
        logger: logging.Logger | logging.LoggerAdapter[Any] | str | None = None,
        levels: Mapping[type[Event], int | str] | None = None,
        *,
        skip_disabled: bool = True,
        severity: Severity | None = None,
    ) -> None:
        if logger is None:
            logger = logging.getLogger("resilient")
        elif isinstance(logger, str):
            logger = logging.getLogger(logger)
        elif not isinstance(logger, (logging.Logger, logging.LoggerAdapter)):
            raise TypeError(
                f"logger must be a logging.Logger, a logger name or None, got {_describe(logger)}"
            )
        self.logger: logging.Logger | logging.LoggerAdapter[Any] = logger
        self.levels: Mapping[type[Event], int] = check_levels("levels", levels, DEFAULT_LEVELS)
        if not isinstance(skip_disabled, bool):
            raise TypeError(f"skip_disabled must be a bool, got {_describe(skip_disabled)}")
        self.skip_disabled = skip_disabled
        self.severity = check_severity("severity", severity)
        # Concrete event class -> level, filled on first sight of each class.
        self._level_cache: dict[type, int] = {}
        self._lock = threading.Lock()
        self._handles: list[Subscription] = []

    def __repr__(self) -> str:
        return f"LoggingAdapter(logger={self.logger.name!r})"

    def level_of(self, event_type: type[Event]) -> int:
        """Return the level events of *event_type* are logged at (before any *severity* callable).

        Args:
            event_type: An event class.

        Returns:
            The configured level (of the class or its nearest base).
        """
        level = self._level_cache.get(event_type)
        if level is None:
            level = level_for(event_type, self.levels)
            self._level_cache[event_type] = level
        return level

    def __call__(self, event: Event) -> None:
        """Log *event* if the logger is enabled for its level.

        The record carries the event's ``resilient_*`` fields, the running
        call's attributes as ``resilient_attributes`` (when it has any), and
        for a failed call or retry giving up the exception as ``exc_info``.

        Args:
            event: Any event.
        """
        cls = type(event)
        level = self._level_cache.get(cls)
        if level is None:
            level = self.level_of(cls)
        if self.severity is not None:
            level = pick_level(event, level, self.severity)
        logger = self.logger
        if not logger.isEnabledFor(level):
            return
        extra = record_extra(event)
        attributes = call_attributes(event)
        if attributes is not None:
            extra["resilient_attributes"] = dict(attributes)
        logger.log(level, render(event), extra=extra, exc_info=exc_info_of(event))

    def wanted_types(self) -> tuple[type[Event], ...]:
        """Return the event classes :meth:`attach` subscribes to right now.

        Returns:
            ``(Event,)``, or, when ``skip_disabled`` is True (and there is no
            *severity* callable) and the logger would drop a per-call kind
            (:data:`PER_CALL`), the event classes covering every other kind.
        """
        if not self.skip_disabled or self.severity is not None:
            return ALL_EVENTS
        quiet = tuple(c for c in PER_CALL if not self.logger.isEnabledFor(self.level_of(c)))
        if not quiet:
            return ALL_EVENTS
        return cover(lambda cls: issubclass(cls, quiet))

    def attach(self, bus: EventBus | None = None) -> Subscription:
        """Start logging the events emitted on *bus*.

        Args:
            bus: The bus (default: ``resilient.events.default_bus``).

        Returns:
            The :class:`~resilient.events.Subscription`; ``unsubscribe()`` stops logging.

        Raises:
            TypeError: *bus* is not an EventBus.
        """
        handle = attach(self, self.wanted_types(), bus)
        with self._lock:
            self._handles = [h for h in self._handles if h.active] + [handle]
        return handle

    def refresh(self) -> None:
        """Re-read the logger's level and re-subscribe every active attachment to match.

        Needed only with ``skip_disabled=True``, after the logger's level was
        lowered at run time so that it now logs ``CallSucceeded`` (DEBUG by
        default); subscriptions returned by :meth:`attach` stay valid.
        """
        types = self.wanted_types()
        with self._lock:
            self._handles = [h for h in self._handles if h.active]
            handles = list(self._handles)
        for handle in handles:
            bus = handle._bus
            fresh = bus.subscribe(self, *types)
            old = handle._sub
            # Swap the registration inside the caller's handle, so the
            # Subscription they hold still unsubscribes the live one.
            handle._sub = fresh._sub
            bus._remove(old)
