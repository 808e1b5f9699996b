"""Numbers from configuration, as plain ``int`` and ``float``.

A subclass of ``int``, ``float`` or ``timedelta`` can lie: its comparisons,
``__bool__``, ``__int__``, ``__float__``, ``__index__`` and
``total_seconds()`` may all be overridden, so a check like ``value < 1``
proves nothing, and a stored subclass keeps lying to every later
comparison. Every numeric configuration value is therefore converted first,
through the base type's own conversion (``int.__int__``,
``float.__float__``, ``timedelta.total_seconds``), which reads the stored
value and calls no override, and only the plain result is checked and kept.
Types are tested with ``type(value)``, not ``isinstance``, which an object
can fool through its ``__class__``.

No imports from the rest of the package: ``_events`` uses this too.
"""

from __future__ import annotations

from datetime import timedelta

__all__ = ["describe", "plain_number", "plain_seconds"]


def plain_number(value: object) -> int | float | None:
    """Return *value* as a plain ``int`` or ``float``, or None if it is neither (``bool`` is neither).

    Args:
        value: What the user passed.

    Returns:
        The plain number holding the value *value* really stores, or None.
    """
    t = type(value)
    if t is int or t is float:
        return value  # type: ignore[return-value]
    if t is bool:
        return None
    if issubclass(t, float):
        return float.__float__(value)  # type: ignore[arg-type]
    if issubclass(t, int):
        return int.__int__(value)  # type: ignore[arg-type]
    return None


def plain_seconds(value: object) -> int | float | None:
    """Like :func:`plain_number`, also reading a ``timedelta`` (subclass) as its true seconds.

    Args:
        value: What the user passed.

    Returns:
        The plain number of seconds, or None for anything else.
    """
    if issubclass(type(value), timedelta):
        return timedelta.total_seconds(value)  # type: ignore[arg-type]
    return plain_number(value)


def describe(value: object, *, typed: bool = True, limit: int = 80) -> str:
    """Show a user's value in a message: ``"<type> <repr>"``, even when ``repr`` itself fails.

    The one way the library puts a value it was given into an error (or log)
    message. ``repr`` may raise (a 5,000-digit ``int`` raises ``ValueError``
    under CPython's integer string conversion limit; any class may define a
    ``__repr__`` that raises), run long, or return a ``str`` subclass: the
    message must still be built, and still name the parameter it is about.
    Control-flow exceptions raised by ``repr`` propagate.

    Args:
        value: The offending value.
        typed: Prefix the type's name (``"str 'x'"``); False for the repr alone.
        limit: The most characters of repr shown (longer is cut, ending ``...``).

    Returns:
        A short description; ``"<unrepresentable int>"`` when ``repr`` fails.
    """
    name = type(value).__name__
    try:
        text = str.__str__(repr(value))  # a plain str, whatever __repr__ returned
    except Exception:
        return f"<unrepresentable {name}>"
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{name} {text}" if typed else text
