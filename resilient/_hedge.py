"""``hedge``: when an attempt is slow, start another; the first good answer wins.

Each attempt runs in a task of its own, created with a copy of the caller's
context, and runs the layers inside the hedge (so ``current_call().attempt``
is that attempt's number). The caller's task waits for the race in the
hedge layer: a task that finishes wakes it through a done callback, the
hedging delay through a timer on the policy's clock. Once the outcome is
known, every attempt still running is cancelled and awaited before the call
returns, as a ``TaskGroup`` does, so no attempt outlives the call and a
loser's error never surfaces.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, ParamSpec, TypeAlias, TypeVar, overload

from ._budget import RetryBudget
from ._clock import Clock, TimerHandle, call_later
from ._context import CallContext, _deadline, register_layer
from ._events import Event, EventBus, HedgeStarted
from ._introspect import qualname
from ._lazy import LazyModule
from ._pipeline import Args, AsyncLayer, Kwargs, Policy, SyncLayer
from ._validate import (
    ExceptionSpec,
    Matcher,
    check_bus,
    check_clock,
    check_duration,
    check_int,
    check_name,
    make_matcher,
)

if TYPE_CHECKING:
    import asyncio
else:
    asyncio = LazyModule("asyncio", globals())  # imported on first use

__all__ = ["DEFAULT_DELAY", "Hedge", "hedge"]

P = ParamSpec("P")
T = TypeVar("T")
C = TypeVar("C")

_Attempt: TypeAlias = Callable[
    [CallContext, Callable[..., Any], Args, Kwargs, "_Race", int], Coroutine[Any, Any, Any]
]

DEFAULT_DELAY = 2.0
"""Seconds without an answer before the next attempt starts, unless configured.

Polly's default. It is deliberately long: hedging at a healthy service's
usual latency multiplies its load, so the default only hedges calls that are
clearly stuck. Set ``delay`` to about the dependency's p95 latency to cut
the tail.
"""


def _sync_message(target: object) -> str:
    return (
        f"hedge() cannot guard the sync function {qualname(target)}: hedged attempts run "
        f"concurrently as asyncio tasks. Make it `async def` (run blocking code in it with "
        f"`await asyncio.to_thread(...)`)."
    )


class _Race:
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
        attempt: _Attempt,
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


class Hedge(Policy):
    """The policy returned by :func:`hedge` (see it for the arguments)."""

    kind: ClassVar[str] = "hedge"
    emits: ClassVar[tuple[type[Event], ...]] = (HedgeStarted,)
    supports_sync: ClassVar[bool] = False

    def __init__(
        self,
        *,
        attempts: int = 2,
        delay: float | timedelta | None = DEFAULT_DELAY,
        on: ExceptionSpec = Exception,
        on_result: Callable[[Any], bool] | None = None,
        budget: RetryBudget | None = None,
        name: str | None = None,
        clock: Clock | None = None,
        bus: EventBus | None = None,
    ) -> None:
        self.attempts = check_int("attempts", attempts, minimum=1)
        self.delay = check_duration("delay", delay, allow_zero=True, allow_none=True)
        self._match: Matcher = make_matcher("on", on)
        self.on = on
        if on_result is not None and not callable(on_result):
            raise TypeError(f"on_result must be a predicate (result) -> bool, got {on_result!r}")
        self.on_result = on_result
        if budget is not None and not (
            callable(getattr(budget, "try_withdraw", None)) and callable(getattr(budget, "deposit", None))
        ):
            raise TypeError(f"budget must be a RetryBudget (deposit/try_withdraw), got {budget!r}")
        self.budget = budget
        self.name = check_name(name)
        self.clock = check_clock(clock)
        self.bus = check_bus(bus)

    def __repr__(self) -> str:
        return f"hedge(attempts={self.attempts}, delay={self.delay!r})"

    if TYPE_CHECKING:
        # Only coroutine functions, as for timeout: `@hedge()` on a sync
        # function is a static type error as well as a TypeError.
        @overload  # type: ignore[override]
        def __call__(
            self, fn: classmethod[C, P, Coroutine[Any, Any, T]]
        ) -> classmethod[C, P, Coroutine[Any, Any, T]]: ...
        @overload
        def __call__(
            self, fn: staticmethod[P, Coroutine[Any, Any, T]]
        ) -> staticmethod[P, Coroutine[Any, Any, T]]: ...
        @overload
        def __call__(
            self, fn: Callable[P, Coroutine[Any, Any, T]]
        ) -> Callable[P, Coroutine[Any, Any, T]]: ...
        def __call__(self, fn: Any) -> Any: ...

        def call(  # type: ignore[override]
            self, fn: Callable[P, Coroutine[Any, Any, T]], /, *args: P.args, **kwargs: P.kwargs
        ) -> Coroutine[Any, Any, T]: ...

    def check_sync(self, target: object) -> None:
        """Always raises: hedged attempts need an event loop.

        Args:
            target: The sync function about to be guarded.

        Raises:
            TypeError: Always.
        """
        raise TypeError(_sync_message(target))

    def wrap_async(self, inner: AsyncLayer) -> AsyncLayer:
        """Return the layer that races attempts of *inner*."""

        async def attempt(
            ctx: CallContext, fn: Callable[..., Any], args: Args, kwargs: Kwargs, race: _Race, index: int
        ) -> Any:
            # The root of each attempt's task: current_call() inside it finds this frame.
            try:
                return await inner(ctx, fn, args, kwargs)
            finally:
                race.land(index)

        register_layer(attempt)
        budget = self.budget

        async def run(ctx: CallContext, fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
            if budget is not None:
                budget.deposit()
            return await _Race(self, attempt, ctx, fn, args, kwargs).run()

        return run

    def wrap_sync(self, inner: SyncLayer) -> SyncLayer:
        """Always raises: a sync function cannot run concurrent attempts.

        Raises:
            TypeError: Always.
        """
        raise TypeError(_sync_message(inner))


def hedge(
    *,
    attempts: int = 2,
    delay: float | timedelta | None = DEFAULT_DELAY,
    on: ExceptionSpec = Exception,
    on_result: Callable[[Any], bool] | None = None,
    budget: RetryBudget | None = None,
    name: str | None = None,
    clock: Clock | None = None,
    bus: EventBus | None = None,
) -> Hedge:
    """Race attempts of an async call: start another when none has answered after *delay*.

    The first attempt starts at once. Whenever *delay* passes with no
    attempt finished, the next one starts (``delay=0``: all at once;
    ``delay=None``: only after a failure). An attempt that fails with an
    exception matching *on* (or returns a result matching *on_result*)
    starts the next one at once. The first other outcome wins: a result is
    returned, an exception not matching *on* is raised. The attempts still
    running are then cancelled and awaited before the call returns, and
    their errors never surface. When every attempt fails, the outcome of the
    last to finish propagates (the exception as the same object, or the
    result).

    Each attempt is a task of its own, created with a copy of the caller's
    context, running the policies inside the hedge; ``current_call().attempt``
    is its number. Cancelling the caller cancels and awaits every attempt.
    An ambient deadline (an enclosing ``timeout``) bounds all attempts, and
    no attempt starts once it has passed. Sync functions are refused.

    Args:
        attempts: Attempts in all, the first included (int >= 1).
        delay: Seconds (or a ``timedelta``) without an answer before the
            next attempt starts; about the dependency's p95 latency. ``0``
            starts every attempt at once, ``None`` hedges only failures.
            Default: 2 s (Polly's default), long enough not to multiply a
            healthy dependency's load.
        on: Exception type, tuple of types, or predicate: failures that
            start the next attempt at once. Others end the call. A rejection
            (an error with ``retry_after``, e.g. ``CircuitOpenError``) is
            an ordinary exception here: it is handled only if *on* matches.
        on_result: Predicate ``(result) -> bool``; True makes the result a
            failure that starts the next attempt.
        budget: A :class:`RetryBudget`: every call deposits, every attempt
            after the first withdraws; when it is spent, no further attempt
            starts (hedging multiplies load, like retries do).
        name: Name reported in events.
        clock: Time source of the hedging delay; ``FakeClock`` in tests.
        bus: Event bus (default: ``default_bus``).

    Returns:
        The :class:`Hedge` policy: a decorator with ``.call``.

    Raises:
        TypeError: A parameter has the wrong type, or (when decorating) the
            function is sync.
        ValueError: A parameter is out of range, or *on* names only
            control-flow exceptions.
    """
    return Hedge(
        attempts=attempts,
        delay=delay,
        on=on,
        on_result=on_result,
        budget=budget,
        name=name,
        clock=clock,
        bus=bus,
    )
