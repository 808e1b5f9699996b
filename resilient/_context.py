"""The running call's context and the ambient deadline.

Two context variables: the innermost pipeline call (:class:`CallContext`),
and the ambient deadline that ``timeout`` sets for everything it wraps.
Context variables follow the task (and are copied into child tasks), so
concurrent calls never see each other's state.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from typing import TYPE_CHECKING

from ._clock import Clock

if TYPE_CHECKING:
    from ._pipeline import Pipeline

__all__ = ["CallContext", "current_call", "remaining"]


class Deadline:
    """A point in a clock's time by which work must end."""

    __slots__ = ("at", "clock", "task")

    def __init__(self, at: float, clock: Clock, task: asyncio.Task[object] | None) -> None:
        self.at = at
        self.clock = clock
        self.task = task

    def remaining(self) -> float:
        return self.at - self.clock.monotonic()


_deadline: ContextVar[Deadline | None] = ContextVar("resilient_deadline", default=None)
_current: ContextVar[CallContext | None] = ContextVar("resilient_call", default=None)


class CallContext:
    """What a running pipeline call knows about itself.

    Attributes:
        operation: Qualified name of the protected function.
        attempt: The current attempt, 1-based (retry advances it).
        pipeline: The pipeline running the call.
    """

    __slots__ = ("attempt", "operation", "pipeline")

    def __init__(self, operation: str, pipeline: Pipeline) -> None:
        self.operation = operation
        self.attempt = 1
        self.pipeline = pipeline

    @property
    def deadline(self) -> float | None:
        """The ambient deadline in the deadline clock's monotonic seconds, or None."""
        d = _deadline.get()
        return None if d is None else d.at

    def remaining(self) -> float | None:
        """Seconds left before the ambient deadline (never negative), or None.

        Returns:
            The budget to hand to a client (e.g. an HTTP timeout), or None
            when no ``timeout`` encloses the call.
        """
        d = _deadline.get()
        if d is None:
            return None
        return max(0.0, d.remaining())

    def __repr__(self) -> str:
        return f"<CallContext operation={self.operation!r} attempt={self.attempt} deadline={self.deadline}>"


def current_call() -> CallContext | None:
    """Return the :class:`CallContext` of the innermost running pipeline call.

    Works in sync and async functions.

    Returns:
        The context, or None outside any pipeline call.
    """
    return _current.get()


def remaining() -> float | None:
    """Return the seconds left before the ambient deadline, or None.

    A shortcut for ``current_call().remaining()`` that also sees a deadline
    set by ``async with timeout(...)`` outside any decorated function.

    Returns:
        Seconds left (never negative), or None when no deadline applies
        (in particular outside any pipeline call).
    """
    d = _deadline.get()
    if d is None:
        return None
    return max(0.0, d.remaining())
