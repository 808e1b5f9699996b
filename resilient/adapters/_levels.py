"""Log levels for the logging and structlog adapters: per event class, per event (severity), thresholds."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

from resilient._events import EXPLICIT_ONLY, Event
from resilient._introspect import is_async_callable

__all__ = [
    "Severity",
    "as_level",
    "check_level",
    "check_levels",
    "check_severity",
    "cover",
    "level_for",
    "pick_level",
    "subtree",
]

logger = logging.getLogger("resilient")


Severity: TypeAlias = Callable[[Any], "int | str | None"]
"""``(event) -> level | None``: the level of one event, or None for the configured one."""


def as_level(value: object) -> int | None:
    """Return *value* as a logging level (an int >= 0 or a name like ``"WARNING"``), else None."""
    if isinstance(value, str):
        number = logging.getLevelName(value.upper())
        return number if isinstance(number, int) else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def check_level(param: str, value: object) -> int:
    """Validate one level parameter.

    Args:
        param: The parameter name for error messages.
        value: An int >= 0 or a level name.

    Returns:
        The level as an int.

    Raises:
        TypeError: *value* is not an int or a str.
        ValueError: *value* is an unknown name or negative.
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"{param} must be an int or a level name, got {value!r}")
    level = as_level(value)
    if level is None:
        raise ValueError(f"{param} must be a known level name or an int >= 0, got {value!r}")
    return level


def check_severity(param: str, severity: object) -> Severity | None:
    """Validate a severity callable (or None).

    Args:
        param: The parameter name for error messages.
        severity: ``(event) -> level | None``, or None.

    Returns:
        The callable, or None.

    Raises:
        TypeError: *severity* is neither a sync callable nor None.
    """
    if severity is not None and not (callable(severity) and not is_async_callable(severity)):
        # An async one's coroutine is no level: every event would log an error instead.
        raise TypeError(
            f"{param} must be a plain (not async) callable (event) -> level or None, got {severity!r}"
        )
    return severity


def pick_level(event: Event, configured: int, severity: Severity) -> int:
    """Ask *severity* for *event*'s level; fall back to *configured* on None or a bad answer.

    A callable that raises or returns something that is not a level is
    logged on the ``resilient`` logger; the event is still logged, at its
    configured level.

    Args:
        event: The event.
        configured: The level from the ``levels`` mapping.
        severity: The user's callable.

    Returns:
        The level to log at.
    """
    try:
        found = severity(event)
    except Exception:
        logger.exception("resilient severity callable %r failed on %r", severity, event)
        return configured
    if found is None:
        return configured
    level = as_level(found)
    if level is None:
        logger.error("resilient severity callable %r returned %r (no level) for %r", severity, found, event)
        return configured
    return level


def subtree(cls: type[Event]) -> list[type[Event]]:
    """Return *cls* and every subclass of it defined so far."""
    out = [cls]
    for child in cls.__subclasses__():
        out.extend(subtree(child))
    return out


def cover(unwanted: Callable[[type[Event]], bool]) -> tuple[type[Event], ...]:
    """Return the fewest event classes whose subscriptions reach every class except the *unwanted* ones.

    Args:
        unwanted: True for an event class the adapter would drop.

    Returns:
        ``(Event,)`` when nothing is unwanted, else the largest subtrees free
        of unwanted classes.
    """

    def walk(cls: type[Event]) -> list[type[Event]]:
        if not any(unwanted(c) for c in subtree(cls)):
            return [cls]
        return [found for child in cls.__subclasses__() for found in walk(child)]

    found = walk(Event)
    # A subscription to Event skips the explicit-only lifecycle events: name them.
    found.extend(cls for cls in EXPLICIT_ONLY if not unwanted(cls))
    return tuple(dict.fromkeys(found))


def check_levels(
    param: str, levels: Mapping[type[Event], int | str] | None, defaults: Mapping[type[Event], int]
) -> dict[type[Event], int]:
    """Merge user *levels* over *defaults*, validating keys and values.

    Args:
        param: The parameter name for error messages.
        levels: Event class -> level (an int or a name like ``"WARNING"``).
        defaults: The adapter's default levels.

    Returns:
        The merged mapping.

    Raises:
        TypeError: A key is not an Event class or a value is not an int/str.
        ValueError: A level name is unknown or a level is negative.
    """
    merged = dict(defaults)
    if levels is None:
        return merged
    if not isinstance(levels, Mapping):
        raise TypeError(f"{param} must be a mapping of event class to level, got {levels!r}")
    for cls, level in levels.items():
        if not (isinstance(cls, type) and issubclass(cls, Event)):
            raise TypeError(f"{param} keys must be event classes from resilient.events, got {cls!r}")
        merged[cls] = check_level(f"{param}[{cls.__name__}]", level)
    return merged


def level_for(cls: type, levels: Mapping[type[Event], int]) -> int:
    """Return the level configured for *cls* or its nearest configured base class.

    Args:
        cls: An event class.
        levels: Event class -> level; must contain :class:`Event`.

    Returns:
        The level.
    """
    for base in cls.__mro__:
        found = levels.get(base)
        if found is not None:
            return found
    return levels[Event]
