"""``gate``: graceful shutdown. Stop admitting, let in-flight work finish, then cancel.

A gate counts the calls in flight through it: async calls by their task
(the task is what :meth:`Gate.close` cancels), sync calls by their thread.
One ``threading.Lock`` guards both maps and the closed flag, so admission
and :meth:`Gate.close` cannot race: a call is either counted before the
gate closes, or refused. An open gate costs a call a task lookup, two lock
round trips and two dictionary updates.

A call the gate cancels ends with :class:`GateClosedError` (``reason
"cancelled"``), not ``CancelledError``: as ``timeout`` does, the gate
withdraws its own cancellation request (``task.uncancel()``) and converts
it only if no other cancellation arrived, so an outer cancellation is never
reported as the gate's, and the rest of the task (a request handler
answering 503, a worker loop) goes on.
"""

from __future__ import annotations

import functools
import sys
import threading
import types
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from ._clock import Clock, call_later
from ._context import CallContext
from ._errors import GateClosedError
from ._events import Event, EventBus, GateClosed, GateClosing, GateRejected
from ._lazy import LazyModule
from ._pipeline import Args, AsyncLayer, Kwargs, Policy, SyncLayer
from ._validate import check_bus, check_clock, check_duration, check_name

if TYPE_CHECKING:
    import asyncio
    import concurrent.futures
    from dataclasses import dataclass
else:
    from ._dataclass import dataclass

    asyncio = LazyModule("asyncio", globals())  # imported on first use

__all__ = ["Gate", "GateReport", "gate"]

_get_ident = threading.get_ident
_current: list[Callable[[], asyncio.Task[Any] | None]] = []


def _current_task() -> Callable[[], asyncio.Task[Any] | None]:
    """``asyncio.current_task``; on CPython 3.11 (where that is Python code), the lookup it does."""
    if _current:
        return _current[0]
    found: Any = asyncio.current_task
    tasks = getattr(asyncio.tasks, "_current_tasks", None)
    if not isinstance(found, types.BuiltinFunctionType) and isinstance(tasks, dict):
        get = tasks.get
        running_loop = asyncio._get_running_loop

        def current_task() -> asyncio.Task[Any] | None:
            return get(running_loop())

        found = current_task
    _current.append(found)
    return found  # type: ignore[no-any-return]


def _task_of_this_thread() -> asyncio.Task[Any] | None:
    """The task running in this thread, if any (asyncio not even imported: none)."""
    aio = sys.modules.get("asyncio")
    if aio is None or aio._get_running_loop() is None:
        return None
    return _current_task()()


# Phases of a close, in order.
_GRACE = 0  # waiting for the calls in flight to finish
_CANCEL = 1  # the grace period ran out: async calls are cancelled
_DONE = 2  # the report is written; later endings are not counted


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


class _Closing:
    """A close in progress: its phase, its counts, and whom to wake when the gate empties."""

    __slots__ = (
        "cancelled",
        "cancelled_tasks",
        "finished",
        "grace_end",
        "in_flight",
        "phase",
        "report",
        "waiter",
    )

    def __init__(self, in_flight: int, grace_end: float) -> None:
        self.in_flight = in_flight
        self.grace_end = grace_end
        self.phase = _GRACE
        self.finished = 0
        self.cancelled = 0
        self.cancelled_tasks: set[asyncio.Task[Any]] = set()
        self.waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None
        self.report: GateReport | None = None


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _wake(loop: asyncio.AbstractEventLoop, fut: asyncio.Future[None]) -> None:
    """Resolve *fut* from any thread (through its loop when called from elsewhere)."""
    if asyncio._get_running_loop() is loop:
        _resolve(fut)
        return
    try:
        loop.call_soon_threadsafe(_resolve, fut)
    except RuntimeError:  # its loop is closed: nobody waits any more
        pass


class Gate(Policy):
    """The policy returned by :func:`gate`: counts the calls in flight, and closes gracefully.

    Put it outermost. :meth:`close` stops admitting calls, waits for those
    in flight, cancels what is left, and reports.
    """

    kind: ClassVar[str] = "gate"
    emits: ClassVar[tuple[type[Event], ...]] = (GateRejected,)

    def __init__(
        self, *, name: str | None = None, clock: Clock | None = None, bus: EventBus | None = None
    ) -> None:
        self.name = check_name(name)
        self.clock = check_clock(clock)
        self.bus = check_bus(bus)
        self._lock = threading.Lock()
        self._tasks: dict[asyncio.Task[Any], int] = {}  # task -> its calls in flight
        self._threads: dict[int, int] = {}  # thread ident -> its sync calls in flight
        self._closed = False
        self._closing: _Closing | None = None
        # Cancellations this gate requested and has not withdrawn yet:
        # task -> its cancelling() count before the request.
        self._cancels: dict[asyncio.Task[Any], int] = {}
        # The close() running the shutdown shares its result through this
        # future (None: interrupted, the next close() carries on).
        self._runner: concurrent.futures.Future[GateReport | None] | None = None
        self._report: GateReport | None = None

    def __repr__(self) -> str:
        return "gate()" if self.name is None else f"gate(name={self.name!r})"

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has begun: new calls are refused."""
        return self._closed

    @property
    def in_flight(self) -> int:
        """Calls running through the gate right now (async and sync)."""
        with self._lock:
            return sum(self._tasks.values()) + sum(self._threads.values())

    @property
    def report(self) -> GateReport | None:
        """The report of :meth:`close` once it has returned, else None."""
        return self._report

    # --- admission and accounting (the *_locked methods run under self._lock) -----

    def _reject(self, operation: str | None) -> GateClosedError:
        bus = self.bus
        if bus.wants(GateRejected):
            bus.emit(
                GateRejected(
                    policy="gate",
                    name=self.name,
                    operation=operation,
                    time=self.clock.monotonic(),
                    retry_after=None,
                )
            )
        return GateClosedError(self.name)

    def _admit_closed_locked(self, task: asyncio.Task[Any] | None, ident: int | None) -> bool:
        """A call after close() began: admitted only from inside a call in flight (nested)."""
        closing = self._closing
        inside = (task is not None and task in self._tasks) or (ident is not None and ident in self._threads)
        if not inside or closing is None or closing.phase == _DONE:
            return False
        closing.in_flight += 1
        return True

    def _count_locked(self, closing: _Closing, task: asyncio.Task[Any] | None) -> None:
        """One of the close's calls ended: count it, and wake the close if the gate is empty."""
        if closing.phase == _DONE:
            return
        if task is not None and task in closing.cancelled_tasks:
            closing.cancelled += 1
        else:
            closing.finished += 1
        if closing.waiter is not None and not self._tasks and not self._threads:
            _wake(*closing.waiter)

    def _leave_async(self, task: asyncio.Task[Any], exc: BaseException | None) -> GateClosedError | None:
        """An async call ended. Return the error to raise instead of *exc*, if any."""
        with self._lock:
            n = self._tasks[task]
            if n == 1:
                del self._tasks[task]
            else:
                self._tasks[task] = n - 1
            closing = self._closing
            if closing is None:
                return None
            self._count_locked(closing, task)
            before = self._cancels.pop(task, None)
        if before is None:
            return None
        # Withdraw the gate's cancellation request; report it as the gate's
        # only if it was the only one (an outer cancellation stays one).
        if task.uncancel() <= before and isinstance(exc, asyncio.CancelledError):
            return GateClosedError(self.name, "cancelled")
        return None

    def _leave_sync(self, ident: int) -> None:
        with self._lock:
            n = self._threads[ident]
            if n == 1:
                del self._threads[ident]
            else:
                self._threads[ident] = n - 1
            closing = self._closing
            if closing is not None:
                self._count_locked(closing, None)

    def _cancel(self, task: asyncio.Task[Any]) -> None:
        """Cancel *task*'s call if it is still in flight (run on the task's own loop)."""
        with self._lock:
            closing = self._closing
            if closing is None or task not in self._tasks or task in self._cancels:
                return
            self._cancels[task] = task.cancelling()
            closing.cancelled_tasks.add(task)
        task.cancel()

    # --- policy layers -------------------------------------------------------------

    def wrap_async(self, inner: AsyncLayer) -> AsyncLayer:
        """Return the async layer that counts the call in flight (its task, for cancelling)."""
        lock = self._lock
        tasks = self._tasks
        current_task = _current_task()
        leave = self._leave_async
        me = self

        async def run(ctx: CallContext, fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
            task = current_task()
            if task is None:
                raise RuntimeError("gate() guards calls made inside an asyncio task")
            lock.acquire()
            if me._closed and not me._admit_closed_locked(task, None):
                lock.release()
                raise me._reject(ctx.operation)
            tasks[task] = tasks.get(task, 0) + 1
            lock.release()
            try:
                result = await inner(ctx, fn, args, kwargs)
            except BaseException as exc:
                converted = leave(task, exc)
                if converted is not None:
                    raise converted from exc
                raise
            # leave(), inlined for an open gate: the hot path.
            lock.acquire()
            if me._closing is None:
                n = tasks[task]
                if n == 1:
                    del tasks[task]
                else:
                    tasks[task] = n - 1
                lock.release()
                return result
            lock.release()
            leave(task, None)
            return result

        return run

    def wrap_sync(self, inner: SyncLayer) -> SyncLayer:
        """Return the sync layer that counts the call in flight (a thread is never cancelled)."""
        lock = self._lock
        threads = self._threads
        leave = self._leave_sync
        me = self

        def run(ctx: CallContext, fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
            ident = _get_ident()
            lock.acquire()
            if me._closed and not me._admit_closed_locked(_task_of_this_thread(), ident):
                lock.release()
                raise me._reject(ctx.operation)
            threads[ident] = threads.get(ident, 0) + 1
            lock.release()
            try:
                return inner(ctx, fn, args, kwargs)
            finally:
                leave(ident)

        return run

    # --- closing -------------------------------------------------------------------

    async def close(self, grace: float | timedelta = 30.0, *, unwind: float | timedelta = 5.0) -> GateReport:
        """Shut the gate: refuse new calls, let those in flight finish, then cancel the rest.

        1. From now on a call is refused with :class:`GateClosedError` (and a
           ``GateRejected`` event), unless it is made from inside a call in
           flight (the same task, or the same thread): in-flight work may
           finish what it started. Calls from other tasks it starts are new
           calls.
        2. Wait up to *grace* seconds for the calls in flight to end.
        3. Cancel the async calls still running, each through its own event
           loop; such a call ends with ``GateClosedError(reason="cancelled")``.
           Sync calls cannot be cancelled: they are left to finish.
        4. Wait up to *unwind* seconds for what is left to end.
        5. Emit ``GateClosed``, then drain the gate's bus (async event
           handlers of this event loop) for at most *unwind* seconds.

        Idempotent and safe to call concurrently, from any event loop: every
        call returns the same report; the first call's *grace* and *unwind*
        apply. If the close running the shutdown is cancelled, the gate stays
        closed and the next ``close()`` carries on where it stopped.

        Args:
            grace: Seconds (or a ``timedelta``) the calls in flight get to
                finish, >= 0.
            unwind: Seconds to wait for cancelled calls to end, and for the
                bus to drain, >= 0.

        Returns:
            The :class:`GateReport`: calls finished, cancelled, and still running.

        Raises:
            TypeError: *grace* or *unwind* is not a number or timedelta.
            ValueError: *grace* or *unwind* is negative, NaN or infinite.
            RuntimeError: Awaited inside a call this gate guards (it would
                wait for itself).
        """
        import concurrent.futures

        grace_s = check_duration("grace", grace, allow_zero=True) or 0.0
        unwind_s = check_duration("unwind", unwind, allow_zero=True) or 0.0
        task = _current_task()()
        while True:
            in_flight = 0
            with self._lock:
                if self._report is not None:
                    return self._report
                if task is not None and task in self._tasks:
                    raise RuntimeError(
                        f"{self!r}.close() awaited inside a call it guards would wait for itself; "
                        "close the gate from outside (a signal handler, a lifespan's shutdown)"
                    )
                runner = self._runner
                mine = runner is None
                began = mine and self._closing is None
                if runner is None:
                    runner = self._runner = concurrent.futures.Future()
                if began:
                    self._closed = True
                    in_flight = sum(self._tasks.values()) + sum(self._threads.values())
                    self._closing = _Closing(in_flight, self.clock.monotonic() + grace_s)
            if began:
                self._emit_closing(in_flight, grace_s)
            if not mine:
                # Shielded: a waiter's cancellation must not cancel the shared result.
                report = await asyncio.shield(asyncio.wrap_future(runner))
                if report is not None:
                    return report
                continue  # the close running it was interrupted: carry on here
            try:
                report = await self._shut(unwind_s)
            except BaseException:
                with self._lock:
                    self._runner = None
                runner.set_result(None)
                raise
            runner.set_result(report)
            return report

    def _emit_closing(self, in_flight: int, grace: float) -> None:
        bus = self.bus
        if bus.wants(GateClosing):
            bus.emit(
                GateClosing(
                    policy="gate",
                    name=self.name,
                    operation=None,
                    time=self.clock.monotonic(),
                    in_flight=in_flight,
                    grace=grace,
                )
            )

    async def _shut(self, unwind: float) -> GateReport:
        closing = self._closing
        assert closing is not None
        loop = asyncio.get_running_loop()
        if closing.phase == _GRACE:
            await self._wait_empty(closing, closing.grace_end)
            with self._lock:
                closing.phase = _CANCEL
        if closing.report is None:
            await self._cancel_all(closing, loop, unwind)
            self._emit_closed(closing)
        report = closing.report
        assert report is not None
        if unwind > 0:
            await self._drain(loop, unwind)
        self._report = report
        return report

    async def _cancel_all(self, closing: _Closing, loop: asyncio.AbstractEventLoop, unwind: float) -> None:
        """Cancel the async calls in flight, wait up to *unwind* for them, and write the report."""
        cancelled_at = self.clock.monotonic()
        with self._lock:
            targets = [t for t in self._tasks if t not in self._cancels]
        for task in targets:
            home = task.get_loop()
            if home is loop:
                self._cancel(task)
            else:
                try:
                    home.call_soon_threadsafe(self._cancel, task)
                except RuntimeError:  # its loop is closed: the task can never end
                    pass
        await self._wait_empty(closing, cancelled_at + unwind)
        with self._lock:
            closing.phase = _DONE
            closing.report = GateReport(
                in_flight=closing.in_flight,
                finished=closing.finished,
                cancelled=closing.cancelled,
                still_running=sum(self._tasks.values()),
                sync_running=sum(self._threads.values()),
            )

    def _emit_closed(self, closing: _Closing) -> None:
        report = closing.report
        bus = self.bus
        if report is not None and bus.wants(GateClosed):
            bus.emit(
                GateClosed(
                    policy="gate",
                    name=self.name,
                    operation=None,
                    time=self.clock.monotonic(),
                    in_flight=report.in_flight,
                    finished=report.finished,
                    cancelled=report.cancelled,
                    still_running=report.still_running,
                    sync_running=report.sync_running,
                )
            )

    async def _wait_empty(self, closing: _Closing, until: float) -> None:
        """Wait until no call is in flight, or until the clock reads *until*."""
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                if not self._tasks and not self._threads:
                    return
                left = until - self.clock.monotonic()
                if left <= 0:
                    return
                fut: asyncio.Future[None] = loop.create_future()
                closing.waiter = (loop, fut)
            handle = call_later(self.clock, left, functools.partial(_wake, loop, fut))
            try:
                await fut
            finally:
                handle.cancel()
                with self._lock:
                    closing.waiter = None

    async def _drain(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        """Let the bus's async handlers of this loop finish, for at most *seconds*."""
        drain = loop.create_task(self.bus.drain())
        fut: asyncio.Future[None] = loop.create_future()
        drain.add_done_callback(lambda _: _resolve(fut))
        handle = call_later(self.clock, seconds, functools.partial(_wake, loop, fut))
        try:
            await fut
        finally:
            handle.cancel()
            if not drain.done():
                drain.cancel()
                # Let it unwind (our own cancellation, if any, still propagates).
                await asyncio.wait({drain})
        if not drain.cancelled():
            drain.result()


def gate(*, name: str | None = None, clock: Clock | None = None, bus: EventBus | None = None) -> Gate:
    """Count the calls in flight, so that a shutdown can let them finish, then cancel them.

    Put it outermost (``pipeline(gate, fallback, timeout, retry, ...)``).
    ``await g.close(grace=...)`` refuses new calls with
    :class:`GateClosedError` (a rejection error: ``.retry_after`` is None,
    neutral for circuit breakers), waits up to *grace* for the calls in
    flight, cancels the async ones left (each on its own event loop), waits
    for them to unwind, drains the event bus, and returns a
    :class:`GateReport`. Sync calls are counted too, but a thread cannot be
    cancelled: those still running are reported apart.

    Args:
        name: Name reported in errors and events.
        clock: Time source for the grace and unwind periods; ``FakeClock`` in tests.
        bus: Event bus (default: ``default_bus``); ``close()`` drains it.

    Returns:
        The :class:`Gate` policy: decorator, ``.call``, ``.close()``.

    Raises:
        TypeError: A parameter has the wrong type.
        ValueError: *name* is empty.
    """
    return Gate(name=name, clock=clock, bus=bus)
