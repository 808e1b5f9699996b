"""The engine of a hedged call: attempt tasks, the hedging delay, the winner, the losers.

One :class:`Race` per call. Each attempt is a task of its own, created with
a copy of the caller's context, whose root is the hedge's attempt layer (so
``current_call()`` inside it finds the attempt's own context). The caller's
task waits in :meth:`Race.run` for a wake-up: an attempt's coroutine reports
its end itself (a done callback covers a task cancelled before it ran), the
delay through a timer on the policy's clock. Once the outcome is known,
every attempt still running is cancelled and awaited, as a ``TaskGroup``
does: no attempt outlives the call and a loser's error never surfaces.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeAlias

from ._clock import TimerHandle, call_later
from ._context import CallContext, _deadline
from ._events import HedgeStarted
from ._lazy import LazyModule
from ._pipeline import Args, Kwargs

if TYPE_CHECKING:
    import asyncio

    from ._hedge import Hedge
else:
    asyncio = LazyModule("asyncio", globals())  # imported on first use

__all__ = ["Attempt", "Race"]

Attempt: TypeAlias = Callable[
    [CallContext, Callable[..., Any], Args, Kwargs, "Race", int], Coroutine[Any, Any, Any]
]
"""The hedge's attempt layer: ``(ctx, fn, args, kwargs, race, index)``, the root of each attempt's task."""


class Race:
    """One hedged call: its attempt tasks, the finished ones in order, and the timer."""

    __slots__ = (
        "args",
        "attempt",
        "contexts",
        "ctx",
        "decider",
        "due",
        "finished",
        "fn",
        "hedging",
        "kwargs",
        "landed",
        "loop",
        "policy",
        "running",
        "started",
        "tasks",
        "timer",
        "wake",
    )

    def __init__(
        self,
        policy: Hedge,
        attempt: Attempt,
        ctx: CallContext,
        fn: Callable[..., Any],
        args: Args,
        kwargs: Kwargs,
    ) -> None:
        self.policy = policy
        self.attempt = attempt
        self.ctx = ctx
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.loop = asyncio.get_running_loop()
        self.tasks: list[asyncio.Task[Any]] = []
        self.contexts: list[CallContext] = []  # each attempt's
        self.decider = 0  # the attempt whose outcome the caller gets
        self.finished: deque[int] = deque()  # indexes into tasks, in the order they finished
        self.landed: set[int] = set()
        self.wake: asyncio.Future[None] | None = None
        self.timer: TimerHandle | None = None
        self.due = False  # the hedging delay elapsed
        self.hedging = True  # False once no further attempt may start
        self.started = 0
        self.running = 0  # started and not yet looked at

    # -- callbacks (on the loop) ---------------------------------------------------------

    def land(self, index: int) -> None:
        """Attempt *index* ended (called at the end of its coroutine, or when its task is done).

        The attempt's coroutine reports itself as it ends, so the caller
        wakes one loop iteration sooner than through a done callback; the
        done callback remains for a task cancelled before it ever ran.
        """
        if index in self.landed:
            return
        self.landed.add(index)
        self.finished.append(index)
        wake = self.wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.land(self.tasks.index(task))

    def _timer_fired(self) -> None:
        # A FakeClock may be advanced from another thread: reach the loop safely.
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is self.loop:
            self._elapsed()
        else:
            self.loop.call_soon_threadsafe(self._elapsed)

    def _elapsed(self) -> None:
        self.timer = None
        if not self.hedging:
            return
        self.due = True
        wake = self.wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    # -- starting attempts -----------------------------------------------------------------

    def _may_start(self) -> bool:
        """True if another attempt may start now; once False, no further attempt starts."""
        if not self.hedging:
            return False
        policy = self.policy
        ambient = _deadline.get()
        if (
            self.started >= policy.attempts
            or (ambient is not None and ambient.remaining() <= 0)
            or (policy.budget is not None and not policy.budget.try_withdraw())
        ):
            self.stop()
            return False
        return True

    def start(self, reason: str | None) -> None:
        """Start the next attempt (*reason* None for the first: no event)."""
        self.started += 1
        n = self.started
        policy = self.policy
        ctx = self.ctx
        if reason is not None:
            bus = policy.bus
            if bus.wants(HedgeStarted):
                bus.emit(
                    HedgeStarted(
                        policy="hedge",
                        name=policy.name,
                        operation=ctx.operation,
                        time=policy.clock.monotonic(),
                        attempt=n,
                        reason=reason,
                    )
                )
        if n > 1 or not ctx.shared or ctx.attempt != 1:
            # Attempts run at the same time: each gets a context of its own
            # (but the first of an unobserved call, whose context is read-only).
            ctx = ctx.fork()
            ctx.attempt = n
        self.contexts.append(ctx)
        # An eager task may run to its end (and land) inside create_task.
        task = self.loop.create_task(self.attempt(ctx, self.fn, self.args, self.kwargs, self, n - 1))
        self.tasks.append(task)
        self.running += 1
        task.add_done_callback(self._done)

    def arm(self, delay: float | None = None) -> None:
        """(Re)start the hedging delay (or *delay* seconds), if another attempt may follow."""
        timer = self.timer
        if timer is not None:
            timer.cancel()
            self.timer = None
        if delay is None:
            delay = self.policy.delay
        if delay is not None and self.hedging and self.started < self.policy.attempts:
            self.timer = call_later(self.policy.clock, delay, self._timer_fired)

    def stop(self) -> None:
        """No further attempt starts."""
        self.hedging = False
        self.due = False
        timer = self.timer
        if timer is not None:
            timer.cancel()
            self.timer = None

    # -- the race --------------------------------------------------------------------------

    async def run(self) -> Any:
        """Race the attempts; return the winner's result or raise the final exception."""
        try:
            self.begin()
            while True:
                while not self.finished and not self.due:
                    self.wake = self.loop.create_future()
                    await self.wake
                self.wake = None
                if self.due:
                    self.due = False
                    if self._may_start():
                        self.start("delay")
                        self.arm()
                outcome = self.judge()
                if outcome is not None:
                    break
        except BaseException:
            # The caller was cancelled (or on_result raised): no attempt outlives the call.
            self.stop()
            await self.drain()
            raise
        self.stop()
        if self.running:
            # Attempts still running (or finished but not looked at): cancel and await them.
            interrupted = await self.drain()
            if interrupted is not None:
                raise interrupted
        self.adopt()
        exc, result = outcome
        if exc is not None:
            raise exc
        return result

    def begin(self) -> None:
        """Start the first attempt (every attempt, for ``delay=0``) and the hedging delay."""
        self.start(None)
        delay = self.policy.delay
        if delay == 0:
            while self._may_start():
                self.start("delay")
        elif delay is not None and not self.finished:
            # The timer is set once the first attempt has taken its first step,
            # so an attempt that answers at once (the common case) costs none;
            # it is still due `delay` after now, wherever the clock is by then.
            self.loop.call_soon(self._arm_first, self.policy.clock.monotonic() + delay)

    def _arm_first(self, due: float) -> None:
        if self.hedging and not self.landed:
            self.arm(due - self.policy.clock.monotonic())

    def judge(self) -> tuple[BaseException | None, Any] | None:
        """Look at finished attempts in order; return ``(exception, result)`` once the outcome is known."""
        policy = self.policy
        match = policy._match
        on_result = policy.on_result
        while self.finished:
            index = self.decider = self.finished.popleft()
            task = self.tasks[index]
            self.running -= 1
            if task.cancelled():
                # Cancelled by someone other than the hedge: control flow,
                # which is never handled.
                return _cancelled_error(task), None
            exc = task.exception()
            result: Any = None
            if exc is not None:
                if not match(exc):
                    return exc, None
            else:
                result = task.result()
                if on_result is None or not on_result(result):
                    return None, result
            # A handled failure: the next attempt starts at once.
            if self._may_start():
                self.start("failure")
                self.arm()
            elif self.running == 0:
                # Every attempt failed: the last to finish propagates.
                return exc, result
        return None

    def adopt(self) -> None:
        """Give the call's context what the deciding attempt recorded in its own.

        Its attributes (``set_attribute`` inside the attempt), whether a
        fallback answered, and its number: after the call, ``attempt`` is
        the attempt whose outcome the caller got.
        """
        call = self.ctx
        if call.shared:
            return
        attempt = self.contexts[self.decider]
        call.attributes = attempt.attributes
        call.attempt = attempt.attempt
        if attempt.fallback_used:
            call.fallback_used = True

    async def drain(self) -> asyncio.CancelledError | None:
        """Cancel every attempt still running and wait until all are done.

        Returns:
            The cancellation that hit the caller meanwhile (re-raised by the
            caller of this method once every attempt is done), or None.
        """
        tasks = self.tasks
        for task in tasks:
            task.cancel()
        interrupted: asyncio.CancelledError | None = None
        while any(not task.done() for task in tasks):
            self.wake = self.loop.create_future()
            try:
                await self.wake
            except asyncio.CancelledError as exc:
                # Keep waiting, as TaskGroup does: never leave an attempt behind.
                if interrupted is None:
                    interrupted = exc
        self.wake = None
        for task in tasks:
            if not task.cancelled():
                task.exception()  # retrieved: a loser's error never reaches the loop's handler
        return interrupted


def _cancelled_error(task: asyncio.Task[Any]) -> asyncio.CancelledError:
    try:
        task.result()
    except asyncio.CancelledError as exc:
        return exc
    return asyncio.CancelledError()  # pragma: no cover (the task was cancelled)
