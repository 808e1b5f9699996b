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
from contextlib import AbstractContextManager
from contextvars import ContextVar, Token
from datetime import timedelta
from types import CodeType, FrameType, MappingProxyType, TracebackType
from typing import TYPE_CHECKING, TypeAlias, overload

from ._clock import Clock
from ._lazy import LazyLogger
from ._numbers import describe
from ._validate import check_duration

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
    "without_deadline",
]

logger = LazyLogger("resilient")  # logging loads with the first message


class Deadline:
    """A point in a clock's time by which work must end.

    Attributes:
        at: The deadline, in the clock's monotonic seconds.
        clock: The clock it is measured on.
        task: The task whose timer enforces it (others only inherit it).
        seconds: The length of the timeout that set it, reported when it
            fires (default: the time left when it is made).
    """

    __slots__ = ("at", "clock", "seconds", "task")

    def __init__(
        self, at: float, clock: Clock, task: asyncio.Task[object] | None, seconds: float | None = None
    ) -> None:
        self.at = at
        self.clock = clock
        self.task = task
        self.seconds = max(0.0, at - clock.monotonic()) if seconds is None else seconds

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
        "_origin",
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
        # The context this one was forked from for a concurrent attempt (hedge),
        # or None: the call's own context.
        self._origin: CallContext | None = None

    def fork(self) -> CallContext:
        """Return a private copy for one call (used before mutating a shared context).

        Returns:
            A new, unshared context with the same operation, attempt and attributes.
        """
        ctx = CallContext(self.operation, self.pipeline, full_name=self.full_name)
        ctx.attempt = self.attempt
        ctx.attributes = self.attributes
        ctx._origin = self.origin
        return ctx

    @property
    def origin(self) -> CallContext:
        """The context of the call itself: this one, or the one it was forked from.

        A ``hedge`` runs each attempt with a fork of the call's context (its
        own attempt number, at the same time as the others); adapters that
        keep state per call (a span) look it up by the origin.
        """
        return self._origin or self

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
            raise TypeError(f"set_attribute() key must be a non-empty str, got {describe(key)}")
        if not isinstance(value, (str, bool, int, float)):
            raise TypeError(
                f"set_attribute({describe(key, typed=False)}) value must be a str, bool, int or float, "
                f"got {describe(value)}"
            )
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
            raise TypeError(f"on_exit() needs a callable, got {describe(callback)}")
        if self._origin is not None:  # a hedged attempt's fork: the call's own context runs them
            self._origin.on_exit(callback)
            return
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

    @overload
    def remaining(self, *, default: None = None) -> float | None: ...
    @overload
    def remaining(self, *, default: float | timedelta) -> float: ...
    def remaining(self, *, default: float | timedelta | None = None) -> float | None:
        """Seconds left before the ambient deadline (never negative), or *default*.

        Args:
            default: What to return when no deadline applies (seconds or a
                ``timedelta``); see :func:`resilient.remaining`.

        Returns:
            The budget to hand to a client (e.g. an HTTP timeout), or
            *default* (None unless given) when no ``timeout`` encloses the call.
        """
        return remaining(default=default)

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


@overload
def remaining(*, default: None = None) -> float | None: ...
@overload
def remaining(*, default: float | timedelta) -> float: ...
def remaining(*, default: float | timedelta | None = None) -> float | None:
    """Return the seconds left before the ambient deadline, or *default*.

    A shortcut for ``current_call().remaining()`` that also sees a deadline
    set by ``async with timeout(...)`` outside any decorated function.

    To hand the budget to a client, always give a *default*: many clients
    read ``timeout=None`` as "no timeout at all" (httpx does), so
    ``client.get(url, timeout=remaining())`` would switch the client's own
    timeout off wherever no deadline applies. ``remaining(default=5.0)``
    never returns None.

    Args:
        default: Returned when no deadline applies: seconds (finite, >= 0)
            or a ``timedelta``. Checked on every call, deadline or not.

    Returns:
        Seconds left (never negative); when no deadline applies (in
        particular outside any pipeline call), *default*: None unless given.

    Raises:
        TypeError: *default* is not a number of seconds or a timedelta.
        ValueError: *default* is negative, NaN or infinite.
    """
    if default is not None:
        default = check_duration("default", default, allow_zero=True)
    d = _deadline.get()
    if d is None:
        return default
    return max(0.0, d.remaining())


def without_deadline() -> AbstractContextManager[None]:
    """Run a block outside the ambient deadline: ``with resilient.without_deadline():``.

    Inside the block no deadline applies: :func:`remaining` returns None,
    ``retry`` and ``bulkhead`` queues ignore the enclosing deadline, a
    ``timeout`` entered there has its own full length, and a task started
    there (``asyncio.create_task``, ``asyncio.shield(coro)``,
    ``TaskGroup.create_task``) inherits no deadline, for the whole of its
    life. It is the escape hatch for work that must outlive the caller's
    deadline: an audit write, a cache refresh, a shielded commit.

    It does not stop an enclosing ``timeout`` from cancelling the current
    task when its time is up: start the work as a task inside the block
    (and ``await asyncio.shield(task)`` if the caller waits for it). The
    enclosing deadline is restored when the block exits.

    Returns:
        A context manager (sync ``with``; it works in async code too).
    """
    return _WithoutDeadline()


class _WithoutDeadline(AbstractContextManager[None]):
    __slots__ = ("_token",)

    def __init__(self) -> None:
        self._token: Token[Deadline | None] | None = None

    def __enter__(self) -> None:
        if self._token is not None:
            raise RuntimeError("without_deadline() is already entered; use a new one per `with`")
        self._token = _deadline.set(None)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        token = self._token
        if token is None:
            raise RuntimeError("without_deadline() exited without being entered")
        self._token = None
        _deadline.reset(token)

    def __repr__(self) -> str:
        return "without_deadline()"
