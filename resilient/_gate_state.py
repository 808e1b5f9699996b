"""The bookkeeping of a gate's close: the report, the accounting, wake-ups, finding a task.

Kept apart from :mod:`resilient._gate` (the policy and ``close()``) so each
stays readable; nothing here is public but :class:`GateReport`.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._clock import Clock, call_later
from ._lazy import LazyModule

if TYPE_CHECKING:
    import asyncio
    from dataclasses import dataclass

    from ._events import EventBus
else:
    from ._dataclass import dataclass

    asyncio = LazyModule("asyncio", globals())  # imported on first use

__all__ = [
    "CANCEL",
    "DONE",
    "GRACE",
    "Closing",
    "GateReport",
    "drain",
    "resolve",
    "task_lookup",
    "task_of_this_thread",
    "wait_empty",
    "wake",
]


def task_lookup() -> Callable[[], asyncio.Task[Any] | None]:
    """The function returning the running task: ``asyncio.current_task``, cached per task on CPython 3.11.

    On 3.11 ``asyncio.current_task()`` costs a ``getpid()`` system call;
    :func:`resilient._cancelling.running_task` remembers the task in its own
    context instead (imported here, with asyncio, on first use).

    Returns:
        The function.
    """
    from ._cancelling import running_task

    return running_task


def task_of_this_thread() -> asyncio.Task[Any] | None:
    """The task running in this thread, if any (asyncio not even imported: none)."""
    aio = sys.modules.get("asyncio")
    if aio is None or aio._get_running_loop() is None:
        return None
    return task_lookup()()


# Phases of a close, in order.
GRACE = 0  # waiting for the calls in flight to finish
CANCEL = 1  # the grace period ran out: async calls are cancelled
DONE = 2  # the report is written; later endings are not counted


@dataclass(frozen=True, slots=True, kw_only=True)
class GateReport:
    """What :meth:`Gate.close` did with the calls in flight (every count is of calls).

    ``in_flight == finished + cancelled + still_running + sync_running``.

    Attributes:
        in_flight: Calls in flight when the close began, plus the calls they
            made through the gate while it closed (admitted: see
            :meth:`Gate.close`).
        finished: Calls that ended without being cancelled: within the
            grace period, or (sync calls) before the close returned.
        cancelled: Async calls cancelled when the grace period ran out
            that ended before the close returned.
        still_running: Async calls cancelled that had not ended when the
            close returned (they swallowed the cancellation, their cleanup
            outlasted ``unwind``, or their event loop is gone).
        sync_running: Sync calls still running when the close returned: a
            thread cannot be cancelled, so the gate never tries.
    """

    in_flight: int
    finished: int
    cancelled: int
    still_running: int
    sync_running: int

    @property
    def running(self) -> int:
        """Calls of either kind still running when the close returned."""
        return self.still_running + self.sync_running


class Closing:
    """A close in progress: its phase, its accounting, and whom to wake when nothing is left."""

    __slots__ = (
        "cancelled",
        "cancelled_tasks",
        "finished",
        "grace_end",
        "in_flight",
        "phase",
        "report",
        "tasks",
        "threads",
        "waiter",
    )

    def __init__(self, grace_end: float) -> None:
        # The calls still to account for, by task and by thread (no zero entries).
        self.tasks: dict[asyncio.Task[Any], int] = {}
        self.threads: dict[int, int] = {}
        self.in_flight = 0
        self.grace_end = grace_end
        self.phase = GRACE
        self.finished = 0
        self.cancelled = 0
        self.cancelled_tasks: set[asyncio.Task[Any]] = set()
        self.waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None
        self.report: GateReport | None = None

    def settle(self, table: dict[Any, int], key: object, cancelled: bool) -> None:
        """One of the calls of *key* ended: count it, and wake the close if none is left."""
        left = table.get(key, 0)
        if left == 0 or self.phase == DONE:
            return  # not one of ours (it left before the close began), or too late to count
        if left == 1:
            del table[key]
        else:
            table[key] = left - 1
        if cancelled:
            self.cancelled += 1
        else:
            self.finished += 1
        if self.waiter is not None and not self.tasks and not self.threads:
            wake(*self.waiter)

    def admit(self, table: dict[Any, int], key: object, before: int, nested: bool) -> bool:
        """A call of *key* that found the gate closed (*before*: its key's calls before it)."""
        left = table.get(key, 0)
        if left > before:
            return True  # registered before the close copied the maps: it is one of ours
        if not nested or self.phase == DONE:
            return False
        table[key] = left + 1
        self.in_flight += 1
        return True


def resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def wake(loop: asyncio.AbstractEventLoop, fut: asyncio.Future[None]) -> None:
    """Resolve *fut* from any thread (through its loop when called from elsewhere)."""
    if asyncio._get_running_loop() is loop:
        resolve(fut)
        return
    try:
        loop.call_soon_threadsafe(resolve, fut)
    except RuntimeError:  # its loop is closed: nobody waits any more
        pass


async def wait_empty(closing: Closing, lock: threading.Lock, clock: Clock, until: float) -> None:
    """Wait until none of the close's calls is left, or until *clock* reads *until*."""
    loop = asyncio.get_running_loop()
    while True:
        with lock:
            if not closing.tasks and not closing.threads:
                return
            left = until - clock.monotonic()
            if left <= 0:
                return
            fut: asyncio.Future[None] = loop.create_future()
            closing.waiter = (loop, fut)
        handle = call_later(clock, left, functools.partial(wake, loop, fut))
        try:
            await fut
        finally:
            handle.cancel()
            with lock:
                closing.waiter = None


async def drain(bus: EventBus, clock: Clock, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
    """Let *bus*'s async handlers of this loop finish, for at most *seconds* of *clock*."""
    running = loop.create_task(bus.drain())
    fut: asyncio.Future[None] = loop.create_future()
    running.add_done_callback(lambda _: resolve(fut))
    handle = call_later(clock, seconds, functools.partial(wake, loop, fut))
    try:
        await fut
    finally:
        handle.cancel()
        if not running.done():
            running.cancel()
            # Let it unwind (our own cancellation, if any, still propagates).
            await asyncio.wait({running})
    if not running.cancelled():
        running.result()


# Public as resilient.X (imported there on first use): say so wherever it is found.
GateReport.__module__ = "resilient"
