"""Did someone ask to cancel this task while an attempt ran?

``retry`` must never retry an attempt that turned its task's cancellation
into an ordinary exception. The evidence is ``task.cancelling()``: a request
that nobody withdrew (``uncancel()``) is still counted. What counts is the
increase during the attempt, never the absolute value: a cancellation that
code swallowed before the call started (without ``uncancel()``) leaves the
count up for the rest of the task, and must not stop later calls retrying.

CPython before 3.13 adds a second source of stale requests: a
``TaskGroup`` whose child fails while the group's body has already
finished (the parent waits in ``__aexit__``) cancels the parent task and
never withdraws that request (python/cpython#116720, fixed in 3.13 only).
Every such group failure would look like a cancellation. On those versions
the requests such groups made are discounted: they are found through the
``TaskGroup.__aexit__`` frames in the tracebacks of the exception the
attempt raised (the group itself, a group nested in it, or the
``__cause__``/``__context__`` of an exception converted from it). Those
versions are frozen, so reading their private attributes is safe.

``retry`` reads no count before its first attempt (that would cost every
successful call a task lookup). When the first attempt fails while a request
is pending, the count alone cannot say whether the request came during the
attempt or before the call, so the exception must carry the evidence: a
``CancelledError`` in its causes, contexts or group members, or a
``TaskGroup`` exit that held a cancellation to propagate when its
children's errors took priority. A first attempt that swallows a
cancellation without a trace and raises an unrelated error is retried. The
other way round, a ``TaskGroup`` whose failing child interrupted the
group's own body holds its cancellation to propagate only if the count
stayed above zero after its own request was withdrawn: with a stale request
from before the call that looks like an outside cancellation, and the error
is not retried.

One ambiguity remains on old versions: a group body that swallows its own
group's cancellation and returns normally is counted as a leak although
the group withdrew its request; a real cancellation arriving at the same
moment would then be missed. On CPython 3.13+ nothing is discounted.
"""

from __future__ import annotations

import asyncio
import asyncio.taskgroups
import sys
from collections.abc import Iterator
from types import FrameType
from typing import Any

__all__ = ["cancel_requested", "running_task"]

_LEAKY_TASKGROUPS = sys.version_info < (3, 13)
_TASKGROUP_FILE = asyncio.taskgroups.__file__
_EXIT_NAMES = frozenset({"__aexit__", "_aexit"})  # late 3.12 releases moved the body to _aexit

if sys.version_info >= (3, 12):
    #: The running task, or None: read once per retried call, before its first attempt.
    running_task = asyncio.current_task

else:
    from contextvars import ContextVar
    from threading import get_ident

    # This task, its coroutine and its thread, remembered in the task's own context.
    _seen: ContextVar[tuple[asyncio.Task[Any], Any, int] | None] = ContextVar("resilient_task", default=None)

    def running_task() -> asyncio.Task[Any] | None:
        """Return the running task (None outside one), cheaply on CPython 3.11.

        3.11's ``asyncio.current_task()`` is Python code around a running-loop
        lookup that makes a ``getpid()`` system call (about 0.3 us), too much
        for every call. Each task runs in its own context, so the task found
        once is remembered there. A task started inside inherits the value: it
        is still right only while that task's coroutine is the one running, in
        this thread.

        Returns:
            The task.
        """
        seen = _seen.get()
        if seen is not None:
            task, coro, thread = seen
            if coro.cr_running and thread == get_ident():
                return task
        found = asyncio.current_task()
        if found is None:
            return None
        coro = found.get_coro()
        if hasattr(coro, "cr_running"):  # a native coroutine (not a generator-based one)
            _seen.set((found, coro, get_ident()))
        return found


def cancel_requested(task: asyncio.Task[Any], before: int | None, exc: BaseException) -> bool:
    """True if a cancellation of *task* was requested since the count was *before*, and is still pending.

    Args:
        task: The running task.
        before: ``task.cancelling()`` when the attempt started, or None when
            it was not read (the first attempt: reading it costs a task
            lookup on every call).
        exc: The exception the attempt raised.

    Returns:
        Whether the attempt's exception may stand for a cancellation.
    """
    surplus = task.cancelling() - (before or 0)
    if surplus <= 0:
        return False
    if _LEAKY_TASKGROUPS:
        surplus -= _taskgroup_leaks(task, exc)
        if surplus <= 0:
            return False
    if before is None:
        # The count may predate the call (a cancellation swallowed earlier, a
        # TaskGroup's leak outside it): only an exception that carries a
        # cancellation shows this attempt converted one.
        return _carries_cancellation(exc)
    return True


def _carries_cancellation(exc: BaseException) -> bool:
    """True if *exc* shows a cancellation it stands for.

    The evidence: a CancelledError among its causes, contexts or group
    members (a timeout's chain aside: that cancellation was withdrawn), or a
    ``TaskGroup`` exit in its tracebacks that was holding a cancellation to
    propagate when its children's errors took priority (the group raises its
    ExceptionGroup ``from None``, so no chain shows it).

    Returns:
        Whether such evidence was found.
    """
    for e in _linked(exc, TimeoutError):
        if isinstance(e, asyncio.CancelledError):
            return True
        for frame in _taskgroup_exits(e):
            if frame.f_locals.get("propagate_cancellation_error") is not None:
                return True
    return False


def _taskgroup_leaks(task: asyncio.Task[Any], exc: BaseException) -> int:
    """Count the TaskGroups behind *exc* that may have left a cancel request on *task* (CPython < 3.13)."""
    leaks = 0
    seen_groups: set[int] = set()
    for e in _linked(exc):
        for frame in _taskgroup_exits(e):
            local = frame.f_locals
            group = local.get("self")
            if group is not None and id(group) not in seen_groups:
                seen_groups.add(id(group))
                parent = getattr(group, "_parent_task", None)
                # The group asked to cancel its parent, and it did so after
                # the body ended normally (et is None), i.e. while waiting in
                # __aexit__ past the point where it would have withdrawn it.
                if (
                    getattr(group, "_parent_cancel_requested", False)
                    and local.get("et") is None
                    and (parent is None or parent is task)
                ):
                    leaks += 1
    return leaks


def _linked(exc: BaseException, skip: type[BaseException] | tuple[()] = ()) -> Iterator[BaseException]:
    """Yield *exc* and every exception linked to it (group members, causes, contexts) once each.

    Iterative: groups can nest deeper than the recursion limit. An exception
    of a *skip* type is neither yielded nor followed.
    """
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen or isinstance(e, skip):
            continue
        seen.add(id(e))
        yield e
        if isinstance(e, BaseExceptionGroup):
            todo.extend(e.exceptions)
        if e.__cause__ is not None:
            todo.append(e.__cause__)
        if e.__context__ is not None:
            todo.append(e.__context__)


def _taskgroup_exits(exc: BaseException) -> Iterator[FrameType]:
    """Yield the frames of ``TaskGroup`` exits in *exc*'s traceback."""
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename == _TASKGROUP_FILE and code.co_name in _EXIT_NAMES:
            yield tb.tb_frame
        tb = tb.tb_next
