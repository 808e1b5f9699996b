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

from resilient._events import Event, EventBus, Subscription
from resilient.adapters._common import (
    attach,
    check_levels,
    event_fields,
    event_kind,
    import_optional,
    level_for,
)
from resilient.adapters.logging import DEFAULT_LEVELS

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

    Raises:
        ImportError: structlog is not installed (``pip install 'resilient-policies[structlog]'``).
        TypeError: *logger* has no logging methods, or a *levels* entry has the wrong type.
        ValueError: A level name is unknown.
    """

    def __init__(self, logger: Any = None, levels: Mapping[type[Event], int | str] | None = None) -> None:
        structlog = import_optional("structlog", "structlog", "StructlogAdapter")
        if logger is None:
            logger = structlog.get_logger("resilient")
        elif not all(hasattr(logger, m) for m in ("debug", "info", "warning", "error", "critical")):
            raise TypeError(f"logger must be a structlog logger, got {logger!r}")
        self.logger: Any = logger
        self.levels: Mapping[type[Event], int] = check_levels("levels", levels, DEFAULT_LEVELS)
        self._method_cache: dict[type, str] = {}

    def __repr__(self) -> str:
        return f"StructlogAdapter(logger={self.logger!r})"

    def __call__(self, event: Event) -> None:
        """Log *event* with the method its level selects.

        Args:
            event: Any event.
        """
        cls = type(event)
        method = self._method_cache.get(cls)
        if method is None:
            method = _method(level_for(cls, self.levels))
            self._method_cache[cls] = method
        name, fields = entry(event)
        getattr(self.logger, method)(name, **fields)

    def attach(self, bus: EventBus | None = None) -> Subscription:
        """Start logging every event emitted on *bus*.

        Args:
            bus: The bus (default: ``resilient.events.default_bus``).

        Returns:
            The :class:`~resilient.events.Subscription`; ``unsubscribe()`` stops logging.

        Raises:
            TypeError: *bus* is not an EventBus.
        """
        return attach(self, (Event,), bus)
