"""Outcomes: a call's value or its failure, as data.

``await outcome(aw)`` never raises an ``Exception``: it returns an
:class:`Outcome` holding the value or the exception. ``gather_outcomes``
runs several awaitables concurrently and returns one outcome each, in
order; one failing (or timing out) never cancels or loses the others.
Control-flow exceptions (cancellation, ``KeyboardInterrupt``,
``SystemExit``) are never captured: they propagate as the same object.

Not to be confused with :class:`resilient.backends.Outcome`, the enum a
breaker backend records (success, failure, slow): that one is for backend
authors and lives in its own module.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from types import CoroutineType as _CoroutineType
from typing import TYPE_CHECKING, Any, Generic, Never, TypeVar, overload

from ._lazy import LazyModule
from ._numbers import describe

if TYPE_CHECKING:
    import asyncio
else:
    asyncio = LazyModule("asyncio", globals())

__all__ = ["Outcome", "gather_outcomes", "outcome"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
T1 = TypeVar("T1")
T2 = TypeVar("T2")
T3 = TypeVar("T3")
T4 = TypeVar("T4")
T5 = TypeVar("T5")
T6 = TypeVar("T6")


class Outcome(Generic[T_co]):
    """What an awaitable produced: a value, or the ``Exception`` it raised.

    Frozen: its attributes cannot be set or deleted. Build one with
    ``Outcome(value)`` or ``Outcome(exception=exc)``, or get one from
    :func:`outcome` and :func:`gather_outcomes`. Outcomes compare equal when
    they hold equal values, or the same exception object; they hash and
    pickle. (Not a dataclass, which would cost ``import resilient`` about half
    a millisecond to build.)
    """

    __slots__ = ("_exception", "_value")

    _value: T_co | None
    _exception: Exception | None

    @overload
    def __init__(self, value: T_co) -> None: ...
    @overload
    def __init__(self: Outcome[Never], *, exception: Exception) -> None: ...
    def __init__(self, value: Any = None, *, exception: Exception | None = None) -> None:
        if exception is not None:
            if not isinstance(exception, Exception):
                raise TypeError(
                    "exception must be an Exception (control-flow exceptions are never captured), "
                    f"got {describe(exception)}"
                )
            if value is not None:
                raise TypeError("an Outcome holds a value or an exception, not both")
        object.__setattr__(self, "_value", value)
        object.__setattr__(self, "_exception", exception)

    @property
    def value(self) -> T_co | None:
        """The value, or None for a failure (check :attr:`ok`: a success may hold None too)."""
        return self._value

    @property
    def exception(self) -> Exception | None:
        """The exception (the same object that was raised), or None for a success."""
        return self._exception

    @property
    def ok(self) -> bool:
        """True for a value, False for an exception."""
        return self._exception is None

    def unwrap(self) -> T_co:
        """Return the value, or raise the exception (the same object, traceback intact).

        Returns:
            The value.

        Raises:
            Exception: The captured exception, for a failure.
        """
        if self._exception is not None:
            raise self._exception
        return self._value  # type: ignore[return-value]

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Outcome is frozen: cannot assign to {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Outcome is frozen: cannot delete {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Outcome):
            return NotImplemented
        if self._exception is not None or other._exception is not None:
            return self._exception is other._exception
        return bool(self._value == other._value)

    def __hash__(self) -> int:
        if self._exception is not None:
            return hash((Outcome, id(self._exception)))
        return hash((Outcome, self._value))

    def __repr__(self) -> str:
        if self._exception is not None:
            return f"Outcome(exception={self._exception!r})"
        return f"Outcome({self._value!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        if self._exception is not None:
            return (_failed, (self._exception,))
        return (Outcome, (self._value,))


# Building outcomes on the hot paths: the slots' own setters, no validation
# (what is stored is known to be a value, or an Exception).
_new = object.__new__
_set_value: Callable[[Outcome[Any], Any], None] = vars(Outcome)["_value"].__set__
_set_exception: Callable[[Outcome[Any], Exception | None], None] = vars(Outcome)["_exception"].__set__


def _succeeded(value: Any) -> Outcome[Any]:
    o: Outcome[Any] = _new(Outcome)
    _set_value(o, value)
    _set_exception(o, None)
    return o


def _failed(exception: Exception) -> Outcome[Any]:
    o: Outcome[Any] = _new(Outcome)
    _set_value(o, None)
    _set_exception(o, exception)
    return o


def _check_awaitable(aw: object, where: str) -> None:
    if type(aw) is not _CoroutineType and not inspect.isawaitable(aw):
        raise TypeError(f"{where} must be awaitable (a coroutine, task or future), got {describe(aw)}")


_probes: tuple[Callable[[], Any], Callable[[Any, int, BaseException], bool]] | None = None


def _load_probes() -> tuple[Callable[[], Any], Callable[[Any, int, BaseException], bool]]:
    # resilient._cancelling needs asyncio: loaded with the first call only.
    global _probes
    from ._cancelling import cancel_requested, running_task

    _probes = (running_task, cancel_requested)
    return _probes


async def outcome(aw: Awaitable[T]) -> Outcome[T]:
    """Await *aw* and return its :class:`Outcome` instead of raising.

    An ``Exception`` becomes ``Outcome(exception=exc)``. Control-flow
    exceptions (``CancelledError``, ``KeyboardInterrupt``, ``SystemExit``,
    or a group holding one) propagate as the same object. So does an
    exception raised while a cancellation of the awaiting task was requested
    during the await: it may be that cancellation, converted by the awaited
    code, and capturing it would swallow the cancellation.

    Args:
        aw: A coroutine, task, future or other awaitable.

    Returns:
        The outcome.

    Raises:
        TypeError: *aw* is not awaitable.
    """
    _check_awaitable(aw, "aw")
    running_task, cancel_requested = _probes or _load_probes()
    try:
        task = running_task()
    except RuntimeError:  # no asyncio loop: another framework runs the coroutine
        task = None
    before = 0 if task is None else task.cancelling()
    try:
        value = await aw
    except Exception as exc:
        if task is not None and cancel_requested(task, before, exc):
            raise
        return _failed(exc)
    return _succeeded(value)


class _Interrupted:
    """A child ended by a control-flow exception (kept as the same object)."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


async def _child(aw: Awaitable[Any]) -> Outcome[Any] | _Interrupted:
    try:
        value = await aw
    except Exception as exc:
        return _failed(exc)
    except asyncio.CancelledError as exc:
        # Raised inside the child (it awaited something cancelled): kept to
        # be re-raised by the caller, as the same object, once all are done.
        return _Interrupted(exc)
    return _succeeded(value)


async def _finish(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel the children once and wait until every one has ended, however often we are cancelled.

    As ``asyncio.TaskGroup`` does, a further cancellation of the caller is
    not passed on: a child cleaning up after the first one may finish it.
    """
    pending = {t for t in tasks if not t.done()}
    for t in pending:
        t.cancel()
    while pending:
        try:
            _, pending = await asyncio.wait(pending)
        except asyncio.CancelledError:
            pending = {t for t in pending if not t.done()}


@overload
async def gather_outcomes() -> tuple[()]: ...
@overload
async def gather_outcomes(aw1: Awaitable[T1], /) -> tuple[Outcome[T1]]: ...
@overload
async def gather_outcomes(aw1: Awaitable[T1], aw2: Awaitable[T2], /) -> tuple[Outcome[T1], Outcome[T2]]: ...
@overload
async def gather_outcomes(
    aw1: Awaitable[T1], aw2: Awaitable[T2], aw3: Awaitable[T3], /
) -> tuple[Outcome[T1], Outcome[T2], Outcome[T3]]: ...
@overload
async def gather_outcomes(
    aw1: Awaitable[T1], aw2: Awaitable[T2], aw3: Awaitable[T3], aw4: Awaitable[T4], /
) -> tuple[Outcome[T1], Outcome[T2], Outcome[T3], Outcome[T4]]: ...
@overload
async def gather_outcomes(
    aw1: Awaitable[T1], aw2: Awaitable[T2], aw3: Awaitable[T3], aw4: Awaitable[T4], aw5: Awaitable[T5], /
) -> tuple[Outcome[T1], Outcome[T2], Outcome[T3], Outcome[T4], Outcome[T5]]: ...
@overload
async def gather_outcomes(
    aw1: Awaitable[T1],
    aw2: Awaitable[T2],
    aw3: Awaitable[T3],
    aw4: Awaitable[T4],
    aw5: Awaitable[T5],
    aw6: Awaitable[T6],
    /,
) -> tuple[Outcome[T1], Outcome[T2], Outcome[T3], Outcome[T4], Outcome[T5], Outcome[T6]]: ...
@overload
async def gather_outcomes(*aws: Awaitable[T]) -> tuple[Outcome[T], ...]: ...
async def gather_outcomes(*aws: Awaitable[Any]) -> tuple[Outcome[Any], ...]:
    """Run *aws* concurrently and return their :class:`Outcome` s, in order.

    Each awaitable runs in a task of its own. One that fails (a timeout
    included) becomes a failed outcome and never cancels or sinks the
    others. If the caller is cancelled, every child still running is
    cancelled and awaited before the cancellation propagates: no task
    outlives the call. A child that raises ``CancelledError`` by itself (it
    awaited something cancelled elsewhere) is not captured either: once
    every other child has finished, that same exception is raised.

    Unlike ``asyncio.gather``, the result is a tuple (so type checkers know
    each position's type), and a non-awaitable argument fails before any
    child starts: no task is left running, and the coroutines passed are
    closed (never "never awaited").

    Args:
        *aws: Coroutines, tasks, futures or other awaitables.

    Returns:
        One outcome per awaitable, in argument order.

    Raises:
        TypeError: An argument is not awaitable.
    """
    given: tuple[object, ...] = aws
    for i, aw in enumerate(given):
        if not inspect.isawaitable(aw):
            for other in given:
                if inspect.iscoroutine(other):
                    other.close()
            raise TypeError(f"gather_outcomes() argument {i + 1} must be awaitable, got {describe(aw)}")
    if not aws:
        return ()
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(_child(aw)) for aw in aws]
    try:
        await asyncio.wait(tasks)
    except BaseException:
        await _finish(tasks)
        for t in tasks:
            # A child's KeyboardInterrupt or SystemExit already went out
            # through the event loop: mark it seen, so that asyncio does not
            # log "exception was never retrieved" when the task is collected.
            if not t.cancelled():
                t.exception()
        raise
    results = [t.result() for t in tasks]
    for r in results:
        if isinstance(r, _Interrupted):
            raise r.exc
    return tuple(results)  # type: ignore[arg-type]
