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
import threading
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from types import CodeType, FrameType, MappingProxyType
from typing import TYPE_CHECKING, TypeAlias

from ._clock import Clock
from ._lazy import LazyLogger

if TYPE_CHECKING:
    import asyncio

    from ._pipeline import Pipeline

__all__ = [
    "AttributeValue",
    "CallContext",
    "clean_attributes",
    "current_call",
    "delivered_call",
    "delivering",
    "remaining",
]

logger = LazyLogger("resilient")  # logging loads with the first message


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


AttributeValue: TypeAlias = str | bool | int | float
"""A per-call attribute's value: a scalar, as OpenTelemetry and log formatters accept."""

_NO_ATTRIBUTES: Mapping[str, AttributeValue] = MappingProxyType({})


def clean_attributes(found: object, source: str) -> Mapping[str, AttributeValue]:
    """Validate what an ``attributes=`` callable returned; log and drop what is unusable.

    An observability hook must never change a call's outcome, so a bad
    result is reported on the ``resilient`` logger instead of raised.

    Args:
        found: The callable's result: a mapping of str to scalar, or None.
        source: What produced it, for the log message.

    Returns:
        The usable attributes (``None`` values are left out).
    """
    if found is None:
        return _NO_ATTRIBUTES
    if not isinstance(found, Mapping):
        logger.error("%s returned %r, not a mapping of attribute names to values; ignored", source, found)
        return _NO_ATTRIBUTES
    out: dict[str, AttributeValue] = {}
    for key, value in found.items():
        if not isinstance(key, str) or not key:
            logger.error(
                "%s returned the attribute name %r; names are non-empty strings; dropped", source, key
            )
        elif value is None:
            continue
        elif not isinstance(value, (str, bool, int, float)):
            logger.error(
                "%s returned %r for attribute %r; values are str, bool, int or float; dropped",
                source,
                value,
                key,
            )
        else:
            out[key] = value
    return out


class CallContext:
    """What a running pipeline call knows about itself.

    Attributes:
        operation: Qualified name of the protected function (``__qualname__``).
        full_name: Module-qualified name of the protected function
            (``"myapp.client.Client.fetch"``): what metric labels and span
            names use, so same-named functions of different modules stay apart.
        attempt: The current attempt, 1-based (retry advances it).
        pipeline: The pipeline running the call.
        attributes: The call's attributes (from the pipeline's
            ``attributes=`` callable and :meth:`set_attribute`), read by the
            adapters for spans, log records and (allow-listed) metric labels.
            Recorded only while someone observes the pipeline's events.
        fallback_used: True once a ``fallback`` answered a failure during the call.
    """

    __slots__ = (
        "_exits",
        "attempt",
        "attributes",
        "fallback_used",
        "full_name",
        "operation",
        "pipeline",
        "shared",
    )

    def __init__(
        self, operation: str, pipeline: Pipeline, shared: bool = False, full_name: str | None = None
    ) -> None:
        self.operation = operation
        self.full_name = operation if full_name is None else full_name
        self.attempt = 1
        self.pipeline = pipeline
        #: True for the one context an unobserved operation's calls share;
        #: never mutated (see :meth:`fork`).
        self.shared = shared
        self.attributes: Mapping[str, AttributeValue] = _NO_ATTRIBUTES
        self.fallback_used = False
        self._exits: list[Callable[[BaseException | None], object]] | None = None

    def fork(self) -> CallContext:
        """Return a private copy for one call (used before mutating a shared context).

        Returns:
            A new, unshared context with the same operation, attempt and attributes.
        """
        ctx = CallContext(self.operation, self.pipeline, full_name=self.full_name)
        ctx.attempt = self.attempt
        ctx.attributes = self.attributes
        return ctx

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        """Add an attribute to this call (for spans, log records and allow-listed metric labels).

        Call it from the protected function (``resilient.current_call()``)
        for values known only during the call. A call nobody observes runs
        on a shared, read-only context: the value is then dropped, at no cost.

        Args:
            key: The attribute's name; prefer OpenTelemetry's semantic
                conventions where one fits (``server.address``).
            value: A str, bool, int or float.

        Raises:
            TypeError: *key* is not a non-empty str or *value* not a scalar.
        """
        if not isinstance(key, str) or not key:
            raise TypeError(f"set_attribute() key must be a non-empty str, got {key!r}")
        if not isinstance(value, (str, bool, int, float)):
            raise TypeError(f"set_attribute({key!r}) value must be a str, bool, int or float, got {value!r}")
        if self.shared:
            return
        attributes = dict(self.attributes)
        attributes[key] = value
        self.attributes = attributes

    def on_exit(self, callback: Callable[[BaseException | None], object]) -> None:
        """Run *callback* when this call ends, however it ends.

        For a ``CallStarted`` handler that opens something for the call (a
        span made current, a context variable): the pipeline calls
        ``callback(exc)`` after the call's last event, in the caller's task
        or thread, even if the handler has been unsubscribed meanwhile.
        *exc* is None on success, else the exception the caller receives
        (a control-flow exception for a cancelled call). Callbacks run last
        registered first; one that raises is logged and skipped (a
        control-flow exception it raises propagates once the others ran).

        Args:
            callback: ``(exc) -> None``.

        Raises:
            TypeError: *callback* is not callable.
            RuntimeError: This is the shared context of an unobserved call
                (only observed calls, the ones that emit ``CallStarted``,
                run exit callbacks).
        """
        if not callable(callback):
            raise TypeError(f"on_exit() needs a callable, got {callback!r}")
        if self.shared:
            raise RuntimeError("on_exit() works on observed calls only: call it from a CallStarted handler")
        if self._exits is None:
            self._exits = [callback]
        else:
            self._exits.append(callback)

    def run_exits(self, exc: BaseException | None) -> None:
        """Run the :meth:`on_exit` callbacks, last registered first (the pipeline calls this).

        Args:
            exc: None on success, else the exception the call ended with.
        """
        exits = self._exits
        self._exits = None
        interrupt: BaseException | None = None
        while exits:
            callback = exits.pop()
            try:
                callback(exc)
            except Exception:
                logger.exception("resilient on_exit callback %r of %s failed", callback, self.full_name)
            except BaseException as caught:  # KeyboardInterrupt: the others still run, then it propagates
                interrupt = interrupt or caught
        if interrupt is not None:
            raise interrupt

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


class _Delivery(threading.local):
    ctx: CallContext | None = None


delivering = _Delivery()
"""Per thread: the call whose lifecycle event the pipeline is emitting (see :func:`delivered_call`)."""


def delivered_call() -> CallContext | None:
    """Return the call whose lifecycle event (``CallStarted``...) is being delivered here, or None.

    The pipeline sets it around emitting its own call events, so adapters
    find the call without walking the stack (a sync handler runs inline,
    and no other task runs while it does). For a policy's events, use
    :func:`current_call`.

    Returns:
        The call's context, or None.
    """
    return delivering.ctx


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
