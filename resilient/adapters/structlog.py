"""Log every event through :mod:`structlog`, one event name per event kind.

::

    from resilient.adapters.structlog import StructlogAdapter

    StructlogAdapter().attach()

A ``RetryScheduled`` becomes ``logger.warning("resilient.retry_scheduled",
policy="retry", name=None, operation="fetch_user", attempt=1, delay=0.21,
error="ConnectionError('refused')", error_type="ConnectionError",
result=None)``: flat key-value pairs, ready for a JSON renderer.

structlog is imported when the adapter is created, never by ``import resilient``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from resilient._events import ALL_EVENTS, Event, EventBus, Subscription
from resilient._numbers import describe as _describe
from resilient.adapters._common import attach, call_attributes, event_fields, event_kind, import_optional
from resilient.adapters._levels import (
    Severity,
    check_level,
    check_levels,
    check_severity,
    cover,
    level_for,
    pick_level,
)
from resilient.adapters.logging import DEFAULT_LEVELS, exc_info_of

__all__ = ["StructlogAdapter", "entry"]

_METHODS = (
    (logging.CRITICAL, "critical"),
    (logging.ERROR, "error"),
    (logging.WARNING, "warning"),
    (logging.INFO, "info"),
)


_RENAMED = {"exception": "error", "exception_type": "error_type"}


def _method(level: int) -> str:
    for threshold, name in _METHODS:
        if level >= threshold:
            return name
    return "debug"


def entry(event: Event) -> tuple[str, dict[str, Any]]:
    """Return the structlog event name and key-value pairs for *event*.

    Args:
        event: Any event.

    Returns:
        ``("resilient.<kind>", {"policy": ..., "name": ..., "operation": ...,
        <the event's own fields>})``; an exception appears as ``error`` (its
        repr) and ``error_type`` (structlog reserves ``exception`` for
        formatted tracebacks), a circuit state as its value.
    """
    fields: dict[str, Any] = {"policy": event.policy, "name": event.name, "operation": event.operation}
    for key, value in event_fields(event).items():
        # structlog's processors own the "exception" key (a formatted traceback).
        fields[_RENAMED.get(key, key)] = value
    return f"resilient.{event_kind(type(event))}", fields


class StructlogAdapter:
    """Writes events to a structlog logger.

    Args:
        logger: A structlog (bound) logger; None means
            ``structlog.get_logger("resilient")``.
        levels: Event class -> level (int or name), merged over
            :data:`resilient.adapters.logging.DEFAULT_LEVELS`; the level picks
            the logger method (``debug`` ... ``critical``).
        min_level: Events below this level are not logged, and the kinds
            below it are not even subscribed (so by default, INFO, a
            successful call's ``CallStarted`` and ``CallSucceeded``, both
            DEBUG, cost nothing: as quiet as the logging adapter on a
            production logger, whatever structlog's own configuration).
            ``logging.DEBUG`` logs them.
        severity: ``(event) -> level | None``, called for each event: the
            level of this one event, or None for the one *levels* gives (see
            :class:`~resilient.adapters.logging.LoggingAdapter`). With a
            callable every kind is subscribed.

    Raises:
        ImportError: structlog is not installed (``pip install 'resilient-policies[structlog]'``).
        TypeError: *logger* has no logging methods, or a *levels* entry,
            *min_level* or *severity* has the wrong type.
        ValueError: A level name is unknown.
    """

    def __init__(
        self,
        logger: Any = None,
        levels: Mapping[type[Event], int | str] | None = None,
        *,
        min_level: int | str = logging.INFO,
        severity: Severity | None = None,
    ) -> None:
        structlog = import_optional("structlog", "structlog", "StructlogAdapter")
        if logger is None:
            logger = structlog.get_logger("resilient")
        elif not all(hasattr(logger, m) for m in ("debug", "info", "warning", "error", "critical")):
            raise TypeError(f"logger must be a structlog logger, got {_describe(logger)}")
        self.logger: Any = logger
        self.levels: Mapping[type[Event], int] = check_levels("levels", levels, DEFAULT_LEVELS)
        self.min_level = check_level("min_level", min_level)
        self.severity = check_severity("severity", severity)
        self._level_cache: dict[type, int] = {}

    def __repr__(self) -> str:
        return f"StructlogAdapter(logger={self.logger!r})"

    def __call__(self, event: Event) -> None:
        """Log *event* with the method its level selects, unless it is below ``min_level``.

        The entry holds the event's fields (:func:`entry`), the running
        call's attributes under ``attributes`` (when it has any), and for a
        failed call or retry giving up the exception as ``exc_info`` (which
        structlog's ``format_exc_info`` or ``dict_tracebacks`` processors
        render).

        Args:
            event: Any event.
        """
        cls = type(event)
        level = self._level_cache.get(cls)
        if level is None:
            level = self._level_cache[cls] = level_for(cls, self.levels)
        if self.severity is not None:
            level = pick_level(event, level, self.severity)
        if level < self.min_level:
            return
        name, fields = entry(event)
        attributes = call_attributes(event)
        if attributes is not None:
            fields["attributes"] = dict(attributes)
        exc = exc_info_of(event)
        if exc is not None:
            fields["exc_info"] = exc
        getattr(self.logger, _method(level))(name, **fields)

    def wanted_types(self) -> tuple[type[Event], ...]:
        """Return the event classes :meth:`attach` subscribes to.

        Returns:
            The classes covering every kind at or above ``min_level``
            (``(Event,)`` with a *severity* callable).
        """
        if self.severity is not None:
            return ALL_EVENTS
        return cover(lambda cls: level_for(cls, self.levels) < self.min_level)

    def attach(self, bus: EventBus | None = None) -> Subscription:
        """Start logging the events emitted on *bus*.

        Args:
            bus: The bus (default: ``resilient.events.default_bus``).

        Returns:
            The :class:`~resilient.events.Subscription`; ``unsubscribe()`` stops logging.

        Raises:
            TypeError: *bus* is not an EventBus.
        """
        return attach(self, self.wanted_types(), bus)
