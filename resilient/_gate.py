"""``gate``: graceful shutdown. Stop admitting, let in-flight work finish, then cancel.

A gate keeps the calls in flight through it in two maps: async calls by
their task (the task is what :meth:`Gate.close` cancels), sync calls by
their thread. Only a call's own task (or thread) writes its entry, so an
open gate takes no lock: a call costs a task lookup and two dictionary
updates, plus one attribute read each way.

Closing takes the gate's lock, raises the closed flag, then copies the maps:
the calls the close must account for. A call registers itself *before* it
reads the flag, so a call that saw the gate open is in the copy; one that
saw it closed sorts itself out under the lock (in the copy: admitted; made
from inside a call in flight: admitted and added; otherwise: refused). Every
change to the accounting happens under the lock, so the report always adds
up.

A call the gate cancels ends with :class:`GateClosedError` (``reason
"cancelled"``), not ``CancelledError``: as ``timeout`` does, the gate
withdraws its own cancellation request (``task.uncancel()``) and converts
it only if no other cancellation arrived, so an outer cancellation is never
reported as the gate's, and the rest of the task (a request handler
answering 503, a worker loop) goes on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from ._clock import Clock
from ._context import CallContext
from ._errors import GateClosedError
from ._events import Event, EventBus, GateClosed, GateClosing, GateRejected
from ._gate_state import (
    CANCEL,
    DONE,
    GRACE,
    Closing,
    GateReport,
    drain,
    task_lookup,
    task_of_this_thread,
    wait_empty,
)
from ._lazy import LazyModule
from ._pipeline import Args, AsyncLayer, Kwargs, Policy, SyncLayer
from ._validate import check_bus, check_clock, check_duration, check_name

if TYPE_CHECKING:
    import asyncio
    import concurrent.futures
else:
    asyncio = LazyModule("asyncio", globals())  # imported on first use

__all__ = ["Gate", "GateReport", "gate"]

_get_ident = threading.get_ident


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
        self._closing: Closing | None = None
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
        return sum(self._tasks.copy().values()) + sum(self._threads.copy().values())

    @property
    def report(self) -> GateReport | None:
        """The report of :meth:`close` once it has returned, else None."""
        return self._report

    # --- admission and accounting ---------------------------------------------------

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

    def _enter_closed_async(self, task: asyncio.Task[Any], before: int, operation: str | None) -> None:
        """An async call registered itself and then found the gate closed: admit it, or refuse it."""
        with self._lock:
            closing = self._closing
            assert closing is not None
            if closing.admit(closing.tasks, task, before, nested=before > 0):
                return
            if before:
                self._tasks[task] = before
            else:
                del self._tasks[task]
        raise self._reject(operation)

    def _enter_closed_sync(self, ident: int, before: int, operation: str | None) -> None:
        """A sync call registered itself and then found the gate closed: admit it, or refuse it."""
        task = task_of_this_thread()
        with self._lock:
            closing = self._closing
            assert closing is not None
            nested = before > 0 or (task is not None and self._tasks.get(task, 0) > 0)
            if closing.admit(closing.threads, ident, before, nested):
                return
            if before:
                self._threads[ident] = before
            else:
                del self._threads[ident]
        raise self._reject(operation)

    def _exit_closing_async(
        self, task: asyncio.Task[Any], exc: BaseException | None
    ) -> GateClosedError | None:
        """An async call ended while the gate closes. Return the error to raise instead of *exc*, if any."""
        with self._lock:
            closing = self._closing
            assert closing is not None
            closing.settle(closing.tasks, task, task in closing.cancelled_tasks)
            before = self._cancels.pop(task, None)
        if before is None:
            return None
        # Withdraw the gate's cancellation request; report it as the gate's
        # only if it was the only one (an outer cancellation stays one).
        if task.uncancel() <= before and isinstance(exc, asyncio.CancelledError):
            return GateClosedError(self.name, "cancelled")
        return None

    def _exit_closing_sync(self, ident: int) -> None:
        with self._lock:
            closing = self._closing
            assert closing is not None
            closing.settle(closing.threads, ident, False)

    def _cancel(self, task: asyncio.Task[Any]) -> None:
        """Cancel *task*'s call if it is still in flight (run on the task's own loop: it is not running)."""
        with self._lock:
            closing = self._closing
            if closing is None or not self._tasks.get(task) or task in self._cancels:
                return
            self._cancels[task] = task.cancelling()
            closing.cancelled_tasks.add(task)
        task.cancel()

    # --- policy layers -------------------------------------------------------------

    def wrap_async(self, inner: AsyncLayer) -> AsyncLayer:
        """Return the async layer that keeps the call in flight (its task, for cancelling)."""
        tasks = self._tasks
        current_task = task_lookup()
        enter_closed = self._enter_closed_async
        exit_closing = self._exit_closing_async
        me = self

        async def run(ctx: CallContext, fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
            task = current_task()
            if task is None:
                raise RuntimeError("gate() guards calls made inside an asyncio task")
            before = tasks.get(task, 0)
            tasks[task] = before + 1  # registered before reading the flag: see the module docstring
            if me._closed:
                enter_closed(task, before, ctx.operation)
            try:
                result = await inner(ctx, fn, args, kwargs)
            except BaseException as exc:
                if before:
                    tasks[task] = before
                else:
                    del tasks[task]
                if me._closing is not None:
                    converted = exit_closing(task, exc)
                    if converted is not None:
                        raise converted from exc
                raise
            if before:
                tasks[task] = before
            else:
                del tasks[task]
            if me._closing is not None:
                exit_closing(task, None)
            return result

        return run

    def wrap_sync(self, inner: SyncLayer) -> SyncLayer:
        """Return the sync layer that keeps the call in flight (a thread is never cancelled)."""
        threads = self._threads
        get_ident = _get_ident
        enter_closed = self._enter_closed_sync
        exit_closing = self._exit_closing_sync
        me = self

        def run(ctx: CallContext, fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
            ident = get_ident()
            before = threads.get(ident, 0)
            threads[ident] = before + 1
            if me._closed:
                enter_closed(ident, before, ctx.operation)
            try:
                return inner(ctx, fn, args, kwargs)
            finally:
                if before:
                    threads[ident] = before
                else:
                    del threads[ident]
                if me._closing is not None:
                    exit_closing(ident)

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
        task = task_lookup()()
        while True:
            in_flight = 0
            with self._lock:
                if self._report is not None:
                    return self._report
                if task is not None and self._tasks.get(task):
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
                    in_flight = self._begin_locked(grace_s)
            if not mine:
                # Shielded: a waiter's cancellation must not cancel the shared result.
                report = await asyncio.shield(asyncio.wrap_future(runner))
                if report is not None:
                    return report
                continue  # the close running it was interrupted: carry on here
            try:
                if began:
                    # Inside the try: a handler's KeyboardInterrupt must not leave
                    # the runner unresolved (every later close() would wait on it).
                    self._emit_closing(in_flight, grace_s)
                report = await self._shut(unwind_s)
            except BaseException:
                with self._lock:
                    self._runner = None
                runner.set_result(None)
                raise
            runner.set_result(report)
            return report

    def _begin_locked(self, grace: float) -> int:
        """Close the gate and copy what is in flight (under the lock); return how many calls that is."""
        # In this order (see the module docstring): a call leaving from now on
        # settles under the lock, after the copy; a call entering after the
        # copy reads the flag raised.
        closing = self._closing = Closing(self.clock.monotonic() + grace)
        self._closed = True
        closing.tasks = self._tasks.copy()
        closing.threads = self._threads.copy()
        closing.in_flight = sum(closing.tasks.values()) + sum(closing.threads.values())
        return closing.in_flight

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
        if closing.phase == GRACE:
            await wait_empty(closing, self._lock, self.clock, closing.grace_end)
            with self._lock:
                closing.phase = CANCEL
        if closing.report is None:
            await self._cancel_all(closing, loop, unwind)
            self._emit_closed(closing)
        report = closing.report
        assert report is not None
        if unwind > 0:
            await drain(self.bus, self.clock, loop, unwind)
        self._report = report
        return report

    async def _cancel_all(self, closing: Closing, loop: asyncio.AbstractEventLoop, unwind: float) -> None:
        """Cancel the async calls in flight, wait up to *unwind* for them, and write the report."""
        cancelled_at = self.clock.monotonic()
        with self._lock:
            targets = [t for t in closing.tasks if t not in self._cancels]
        for task in targets:
            home = task.get_loop()
            if home is loop:
                self._cancel(task)
            else:
                try:
                    home.call_soon_threadsafe(self._cancel, task)
                except RuntimeError:  # its loop is closed: the task can never end
                    pass
        await wait_empty(closing, self._lock, self.clock, cancelled_at + unwind)
        with self._lock:
            closing.phase = DONE
            closing.report = GateReport(
                in_flight=closing.in_flight,
                finished=closing.finished,
                cancelled=closing.cancelled,
                still_running=sum(closing.tasks.values()),
                sync_running=sum(closing.threads.values()),
            )

    def _emit_closed(self, closing: Closing) -> None:
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


# Public as resilient.X (imported there on first use): say so wherever it is found.
Gate.__module__ = "resilient"
