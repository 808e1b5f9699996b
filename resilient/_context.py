"""The running call's context and the ambient deadline.

The ambient deadline that ``timeout`` sets for everything it wraps is a
context variable: it follows the task and is copied into child tasks.

The running call's :class:`CallContext` costs nothing per call: every
pipeline layer is a function whose first parameter is the context, and
:func:`current_call` finds the innermost such frame on the stack (the way
trio finds its KeyboardInterrupt protection marker). A pipeline that nobody
observes passes one shared, read-only context per operation; ``retry``
forks a private one before its second attempt, and pipelines whose events
have a subscriber give every call its own (so adapters can tell calls
apart).
"""

from __future__ import annotations

import sys
from contextvars import ContextVar
from types import CodeType, FrameType
from typing import TYPE_CHECKING

from ._clock import Clock

if TYPE_CHECKING:
    import asyncio

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

# Code objects of pipeline layers: functions whose first parameter is the
# CallContext of the call they run.
_layer_codes: set[CodeType] = set()


def register_layer(layer: object) -> None:
    """Mark *layer* (a ``(ctx, fn, args, kwargs)`` function) so current_call() sees its frames."""
    code = getattr(layer, "__code__", None)
    if isinstance(code, CodeType) and code.co_argcount >= 1:
        _layer_codes.add(code)


class CallContext:
    """What a running pipeline call knows about itself.

    Attributes:
        operation: Qualified name of the protected function.
        attempt: The current attempt, 1-based (retry advances it).
        pipeline: The pipeline running the call.
    """

    __slots__ = ("attempt", "operation", "pipeline", "shared")

    def __init__(self, operation: str, pipeline: Pipeline, shared: bool = False) -> None:
        self.operation = operation
        self.attempt = 1
        self.pipeline = pipeline
        #: True for the one context an unobserved operation's calls share;
        #: never mutated (see :meth:`fork`).
        self.shared = shared

    def fork(self) -> CallContext:
        """Return a private copy for one call (used before mutating a shared context).

        Returns:
            A new, unshared context with the same operation and attempt.
        """
        ctx = CallContext(self.operation, self.pipeline)
        ctx.attempt = self.attempt
        return ctx

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

    Works in sync and async functions, from the protected function and
    from anything it calls in the same task or thread (a child task started
    inside the call is not "inside" it; it still inherits the deadline).

    Returns:
        The context, or None outside any pipeline call.
    """
    codes = _layer_codes
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if code in codes:
            ctx = frame.f_locals.get(code.co_varnames[0])
            if isinstance(ctx, CallContext):
                return ctx
        frame = frame.f_back
    return None


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
